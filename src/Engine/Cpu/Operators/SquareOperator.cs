using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct SquareOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output) => TensorPrimitives.Multiply(input, input, output);

    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        TensorPrimitives.Multiply(input, outputGrad, inputGrad);
        TensorPrimitives.Multiply(inputGrad, T.CreateTruncating(2), inputGrad);
    }
}
