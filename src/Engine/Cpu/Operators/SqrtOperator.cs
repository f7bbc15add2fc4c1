using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct SqrtOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output) => TensorPrimitives.Sqrt(input, output);

    /// <summary>d sqrt(x) = 1 / (2 sqrt(x)).</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        T half = T.CreateTruncating(0.5);
        for (int i = 0; i < inputGrad.Length; i++)
        {
            inputGrad[i] = outputGrad[i] * half / output[i];
        }
    }
}
