using System.Numerics;
using Engine.Cpu.Operators;

namespace Engine.Cpu;

/// <summary>Elementwise functions: dispatch to the operator structs in Cpu/Operators, in parallel chunks.</summary>
public sealed unsafe partial class CpuBackend
{
    private const int UnaryChunk = 16384;

    public void Unary(UnaryOp op, Tensor input, Tensor result)
    {
        Check.Compatible($"{op}", input, result);
        Check.SameShape($"{op}", input, result);
        RequireContiguous($"{op}", input, "input");
        RequireContiguous($"{op}", result, "result");
        DispatchFloat($"{op}", input, () => UnaryFor<float>(op, input, result), () => UnaryFor<double>(op, input, result));
    }

    public void UnaryBackward(UnaryOp op, Tensor input, Tensor output, Tensor outputGrad, Tensor inputGrad)
    {
        foreach (var (tensor, role) in new[] { (input, "input"), (output, "output"), (outputGrad, "output gradient"), (inputGrad, "input gradient") })
        {
            Check.Compatible($"{op} backward", input, tensor);
            Check.SameShape($"{op} backward", input, tensor);
            RequireContiguous($"{op} backward", tensor, role);
        }
        DispatchFloat($"{op} backward", input,
            () => UnaryBackwardFor<float>(op, input, output, outputGrad, inputGrad),
            () => UnaryBackwardFor<double>(op, input, output, outputGrad, inputGrad));
    }

    private void UnaryFor<T>(UnaryOp op, Tensor input, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: UnaryRun<T, NegOperator<T>>(input, result); break;
            case UnaryOp.Exp: UnaryRun<T, ExpOperator<T>>(input, result); break;
            case UnaryOp.Log: UnaryRun<T, LogOperator<T>>(input, result); break;
            case UnaryOp.Sqrt: UnaryRun<T, SqrtOperator<T>>(input, result); break;
            case UnaryOp.Rsqrt: UnaryRun<T, RsqrtOperator<T>>(input, result); break;
            case UnaryOp.Square: UnaryRun<T, SquareOperator<T>>(input, result); break;
            case UnaryOp.Relu: UnaryRun<T, ReluOperator<T>>(input, result); break;
            case UnaryOp.Sigmoid: UnaryRun<T, SigmoidOperator<T>>(input, result); break;
            case UnaryOp.Silu: UnaryRun<T, SiluOperator<T>>(input, result); break;
            case UnaryOp.Gelu: UnaryRun<T, GeluOperator<T>>(input, result); break;
            default: throw new ArgumentOutOfRangeException(nameof(op), op, "unknown unary operation");
        }
    }

    private void UnaryBackwardFor<T>(UnaryOp op, Tensor input, Tensor output, Tensor outputGrad, Tensor inputGrad) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        switch (op)
        {
            case UnaryOp.Neg: UnaryBackwardRun<T, NegOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Exp: UnaryBackwardRun<T, ExpOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Log: UnaryBackwardRun<T, LogOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Sqrt: UnaryBackwardRun<T, SqrtOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Rsqrt: UnaryBackwardRun<T, RsqrtOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Square: UnaryBackwardRun<T, SquareOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Relu: UnaryBackwardRun<T, ReluOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Sigmoid: UnaryBackwardRun<T, SigmoidOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Silu: UnaryBackwardRun<T, SiluOperator<T>>(input, output, outputGrad, inputGrad); break;
            case UnaryOp.Gelu: UnaryBackwardRun<T, GeluOperator<T>>(input, output, outputGrad, inputGrad); break;
            default: throw new ArgumentOutOfRangeException(nameof(op), op, "unknown unary operation");
        }
    }

    private void UnaryRun<T, TOperator>(Tensor input, Tensor result)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> where TOperator : IUnaryOperator<T>
    {
        T* x = Pointer<T>(input), y = Pointer<T>(result);
        CpuParallel.For(input.ElementCount, Threads, UnaryChunk, (start, end) =>
            TOperator.Forward(new ReadOnlySpan<T>(x + start, (int)(end - start)), new Span<T>(y + start, (int)(end - start))));
    }

    private void UnaryBackwardRun<T, TOperator>(Tensor input, Tensor output, Tensor outputGrad, Tensor inputGrad)
        where T : unmanaged, IBinaryFloatingPointIeee754<T> where TOperator : IUnaryOperator<T>
    {
        T* x = Pointer<T>(input), y = Pointer<T>(output), dy = Pointer<T>(outputGrad), dx = Pointer<T>(inputGrad);
        CpuParallel.For(input.ElementCount, Threads, UnaryChunk, (start, end) =>
        {
            int length = (int)(end - start);
            TOperator.Backward(new ReadOnlySpan<T>(x + start, length), new ReadOnlySpan<T>(y + start, length),
                new ReadOnlySpan<T>(dy + start, length), new Span<T>(dx + start, length));
        });
    }
}
