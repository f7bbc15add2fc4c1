using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

/// <summary>SiLU (swish): x · σ(x), the Llama MLP activation.</summary>
internal readonly struct SiluOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output)
    {
        TensorPrimitives.Sigmoid(input, output);
        TensorPrimitives.Multiply(input, output, output);
    }

    /// <summary>d silu = σ(x) (1 + x (1 − σ(x))); σ is recomputed (the output alone does not determine it).</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        TensorPrimitives.Sigmoid(input, inputGrad);
        for (int i = 0; i < inputGrad.Length; i++)
        {
            T s = inputGrad[i];
            inputGrad[i] = outputGrad[i] * s * (T.One + input[i] * (T.One - s));
        }
    }
}
