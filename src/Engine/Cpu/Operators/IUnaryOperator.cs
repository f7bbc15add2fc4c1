using System.Numerics;

namespace Engine.Cpu.Operators;

/// <summary>
/// One elementwise function with its derivative, both over contiguous spans (so each can use System.Numerics.Tensors'
/// vectorised primitives). <c>Backward</c> receives the forward input and output and may use whichever is cheaper.
/// </summary>
internal interface IUnaryOperator<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
{
    static abstract void Forward(ReadOnlySpan<T> input, Span<T> output);

    static abstract void Backward(ReadOnlySpan<T> input, ReadOnlySpan<T> output, ReadOnlySpan<T> outputGrad, Span<T> inputGrad);
}
