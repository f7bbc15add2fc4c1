using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct RsqrtOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output)
    {
        TensorPrimitives.Sqrt(input, output);
        TensorPrimitives.Reciprocal(output, output);
    }

    /// <summary>d x^(-1/2) = -1/2 · y³ with y = x^(-1/2).</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        T minusHalf = T.CreateTruncating(-0.5);
        for (int i = 0; i < inputGrad.Length; i++)
        {
            T y = output[i];
            inputGrad[i] = outputGrad[i] * minusHalf * y * y * y;
        }
    }
}
