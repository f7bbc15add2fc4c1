using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>Broadcasting add/sub/mul/div and the fused affine map. (Their gradients are compositions, built in autograd.)</summary>
public sealed unsafe partial class CpuBackend
{
    public void Binary(BinaryOp op, Tensor left, Tensor right, Tensor result)
    {
        Check.Compatible($"{op}", left, right);
        Check.SameDType($"{op}", left, result);
        Check.SameShape($"{op}", left, result);
        Check.SameShape($"{op}", right, result);
        DispatchFloat($"{op}", result, () => BinaryRows<float>(op, left, right, result), () => BinaryRows<double>(op, left, right, result));
    }

    private void BinaryRows<T>(BinaryOp op, Tensor left, Tensor right, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var layout = new StridedLayout(result.Shape, left.strides, right.strides, result.strides);
        T* leftBase = Pointer<T>(left), rightBase = Pointer<T>(right), resultBase = Pointer<T>(result);
        long leftStride = layout.InnerStrides[0], rightStride = layout.InnerStrides[1], resultStride = layout.InnerStrides[2];
        int inner = layout.InnerLength;
        CpuParallel.For(layout.RowCount, Threads, Math.Max(1, 32768 / Math.Max(1, inner)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                T* l = leftBase + layout.RowOffset(0, row);
                T* r = rightBase + layout.RowOffset(1, row);
                T* o = resultBase + layout.RowOffset(2, row);
                if (resultStride == 1 && leftStride == 1 && rightStride == 1)
                {
                    var x = new ReadOnlySpan<T>(l, inner);
                    var y = new ReadOnlySpan<T>(r, inner);
                    var z = new Span<T>(o, inner);
                    switch (op)
                    {
                        case BinaryOp.Add: TensorPrimitives.Add(x, y, z); break;
                        case BinaryOp.Sub: TensorPrimitives.Subtract(x, y, z); break;
                        case BinaryOp.Mul: TensorPrimitives.Multiply(x, y, z); break;
                        default: TensorPrimitives.Divide(x, y, z); break;
                    }
                }
                else if (resultStride == 1 && leftStride == 1 && rightStride == 0)
                {
                    var x = new ReadOnlySpan<T>(l, inner);
                    var z = new Span<T>(o, inner);
                    switch (op)
                    {
                        case BinaryOp.Add: TensorPrimitives.Add(x, *r, z); break;
                        case BinaryOp.Sub: TensorPrimitives.Subtract(x, *r, z); break;
                        case BinaryOp.Mul: TensorPrimitives.Multiply(x, *r, z); break;
                        default: TensorPrimitives.Divide(x, *r, z); break;
                    }
                }
                else if (resultStride == 1 && leftStride == 0 && rightStride == 1)
                {
                    var y = new ReadOnlySpan<T>(r, inner);
                    var z = new Span<T>(o, inner);
                    switch (op)
                    {
                        case BinaryOp.Add: TensorPrimitives.Add(y, *l, z); break;
                        case BinaryOp.Sub: TensorPrimitives.Subtract(*l, y, z); break;
                        case BinaryOp.Mul: TensorPrimitives.Multiply(y, *l, z); break;
                        default: TensorPrimitives.Divide(*l, y, z); break;
                    }
                }
                else
                {
                    for (int i = 0; i < inner; i++)
                    {
                        T a = l[i * leftStride], b = r[i * rightStride];
                        o[i * resultStride] = op switch
                        {
                            BinaryOp.Add => a + b,
                            BinaryOp.Sub => a - b,
                            BinaryOp.Mul => a * b,
                            _ => a / b,
                        };
                    }
                }
            }
        });
    }

    public void Affine(Tensor input, double alpha, double beta, Tensor result)
    {
        Check.Compatible("affine", input, result);
        Check.SameShape("affine", input, result);
        RequireContiguous("affine", input, "input");
        RequireContiguous("affine", result, "result");
        DispatchFloat("affine", input, () => AffineRun<float>(input, alpha, beta, result), () => AffineRun<double>(input, alpha, beta, result));
    }

    private void AffineRun<T>(Tensor input, double alpha, double beta, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* x = Pointer<T>(input), y = Pointer<T>(result);
        T scale = FromDouble<T>(alpha), shift = FromDouble<T>(beta);
        CpuParallel.For(input.ElementCount, Threads, 32768, (start, end) =>
        {
            var source = new ReadOnlySpan<T>(x + start, (int)(end - start));
            var target = new Span<T>(y + start, (int)(end - start));
            TensorPrimitives.Multiply(source, scale, target);
            TensorPrimitives.Add(target, shift, target);
        });
    }
}
