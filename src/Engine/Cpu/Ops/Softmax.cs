using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>Softmax and log-softmax over the last axis, forward and backward.</summary>
public sealed unsafe partial class CpuBackend
{
    public void Softmax(Tensor input, Tensor result, bool log)
    {
        string name = log ? "log-softmax" : "softmax";
        Check.Compatible(name, input, result);
        Check.SameShape(name, input, result);
        RequireContiguous(name, input, "input");
        RequireContiguous(name, result, "result");
        DispatchFloat(name, input, () => SoftmaxRun<float>(input, result, log), () => SoftmaxRun<double>(input, result, log));
    }

    private void SoftmaxRun<T>(Tensor input, Tensor result, bool log) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int width = input.Dim(-1);
        long rows = input.ElementCount / Math.Max(1, width);
        T* source = Pointer<T>(input), target = Pointer<T>(result);
        CpuParallel.For(rows, Threads, Math.Max(1, 16384 / Math.Max(1, width)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                var x = new ReadOnlySpan<T>(source + row * width, width);
                var y = new Span<T>(target + row * width, width);
                // Subtracting the max keeps exp from overflowing; it cancels in the ratio.
                T max = TensorPrimitives.Max(x);
                TensorPrimitives.Subtract(x, max, y);
                if (log)
                {
                    // y = x − max − log Σ exp(x − max); exp goes to a scratch pass over y then is undone.
                    T logSum = LogSumExpOfShifted(y);
                    TensorPrimitives.Subtract(y, logSum, y);
                }
                else
                {
                    TensorPrimitives.Exp(y, y);
                    T sum = TensorPrimitives.Sum<T>(y);
                    TensorPrimitives.Divide(y, sum, y);
                }
            }
        });
    }

    /// <summary>log Σ exp(v) for already max-shifted values (so every exp is ≤ 1), without a scratch buffer.</summary>
    private static T LogSumExpOfShifted<T>(ReadOnlySpan<T> shifted) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T sum = T.Zero;
        foreach (T value in shifted)
        {
            sum += T.Exp(value);
        }
        return T.Log(sum);
    }

    public void SoftmaxBackward(Tensor output, Tensor outputGrad, Tensor inputGrad, bool log)
    {
        string name = log ? "log-softmax backward" : "softmax backward";
        foreach (var tensor in new[] { outputGrad, inputGrad })
        {
            Check.Compatible(name, output, tensor);
            Check.SameShape(name, output, tensor);
            RequireContiguous(name, tensor, "gradient");
        }
        RequireContiguous(name, output, "output");
        DispatchFloat(name, output, () => SoftmaxBackwardRun<float>(output, outputGrad, inputGrad, log), () => SoftmaxBackwardRun<double>(output, outputGrad, inputGrad, log));
    }

    private void SoftmaxBackwardRun<T>(Tensor output, Tensor outputGrad, Tensor inputGrad, bool log) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int width = output.Dim(-1);
        long rows = output.ElementCount / Math.Max(1, width);
        T* y = Pointer<T>(output), dy = Pointer<T>(outputGrad), dx = Pointer<T>(inputGrad);
        CpuParallel.For(rows, Threads, Math.Max(1, 16384 / Math.Max(1, width)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                var outputs = new ReadOnlySpan<T>(y + row * width, width);
                var gradients = new ReadOnlySpan<T>(dy + row * width, width);
                var result = new Span<T>(dx + row * width, width);
                if (log)
                {
                    // d log-softmax: dx = dy − softmax · Σ dy, softmax = exp(output).
                    T gradientSum = TensorPrimitives.Sum(gradients);
                    for (int i = 0; i < width; i++)
                    {
                        result[i] = gradients[i] - T.Exp(outputs[i]) * gradientSum;
                    }
                }
                else
                {
                    // d softmax: dx = y ∘ (dy − Σ dy ∘ y).
                    T dot = TensorPrimitives.Dot(gradients, outputs);
                    TensorPrimitives.Subtract(gradients, dot, result);
                    TensorPrimitives.Multiply(result, outputs, result);
                }
            }
        });
    }
}
