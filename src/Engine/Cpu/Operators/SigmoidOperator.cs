using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct SigmoidOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output) => TensorPrimitives.Sigmoid(input, output);

    /// <summary>d σ = σ (1 − σ), from the output.</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        for (int i = 0; i < inputGrad.Length; i++)
        {
            T s = output[i];
            inputGrad[i] = outputGrad[i] * s * (T.One - s);
        }
    }
}
