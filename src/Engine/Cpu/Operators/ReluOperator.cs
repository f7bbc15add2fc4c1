using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

internal readonly struct ReluOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    public static void Forward(ReadOnlySpan<T> input, Span<T> output) => TensorPrimitives.Max(input, T.Zero, output);

    /// <summary>Gradient 1 where x &gt; 0, else 0 (0 at x = 0, as PyTorch).</summary>
    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        for (int i = 0; i < inputGrad.Length; i++)
        {
            inputGrad[i] = input[i] > T.Zero ? outputGrad[i] : T.Zero;
        }
    }
}
