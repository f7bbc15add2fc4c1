using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct ExpOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output) => TensorPrimitives.Exp(input, output);

    /// <summary>d exp(x) = exp(x): reuse the output.</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad) =>
        TensorPrimitives.Multiply(output, outputGrad, inputGrad);
}
