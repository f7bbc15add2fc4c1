using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu.Operators;

/// <summary>GELU with the tanh approximation: 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))).</summary>
internal readonly struct GeluOperator<T> : IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    private static readonly T SqrtTwoOverPi = T.CreateTruncating(0.7978845608028654);
    private static readonly T Cubic = T.CreateTruncating(0.044715);
    private static readonly T Half = T.CreateTruncating(0.5);
    private static readonly T Three = T.CreateTruncating(3);

    public static void Forward(ReadOnlySpan<T> input, Span<T> output)
    {
        for (int i = 0; i < output.Length; i++)
        {
            T x = input[i];
            output[i] = Half * x * (T.One + T.Tanh(SqrtTwoOverPi * (x + Cubic * x * x * x)));
        }
    }

    public static void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad)
    {
        for (int i = 0; i < inputGrad.Length; i++)
        {
            T x = input[i];
            T tanh = T.Tanh(SqrtTwoOverPi * (x + Cubic * x * x * x));
            T innerDerivative = SqrtTwoOverPi * (T.One + Three * Cubic * x * x);
            inputGrad[i] = outputGrad[i] * (Half * (T.One + tanh) + Half * x * (T.One - tanh * tanh) * innerDerivative);
        }
    }
}
