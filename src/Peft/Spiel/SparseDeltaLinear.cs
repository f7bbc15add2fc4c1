using Engine.Autograd;
using Engine.Model;

namespace Engine.Peft.Spiel;

/// <summary>
/// A linear layer with a sparse delta: y = x (W + Δ)ᵀ, Δ = scatter(values at flat indices). The base weight is never
/// cloned: <see cref="Ops.SparseDeltaLinear"/> adds Δ in place around its GEMMs and restores W's saved entries by copy, so
/// W is bit-exact afterwards; the value gradient is computed at the k indices only (no dense dW).
/// </summary>
public sealed class SparseDeltaLinear : AdaptedLinear
{
    private readonly Action<Tensor, Tensor>? gradientObserver;

    internal SparseDeltaLinear(ILinearLayer baseLayer, Tensor indices, Parameter values, Action<Tensor, Tensor>? gradientObserver) : base(baseLayer)
    {
        Indices = indices;
        Values = values;
        this.gradientObserver = gradientObserver;
    }

    /// <summary>Unique int32 flat row-major indices into W [out, in]; replaced at each reselection.</summary>
    public Tensor Indices { get; internal set; }

    /// <summary>The deltas at <see cref="Indices"/>; a dropped slot's value returns to 0 (the pretrained weight).</summary>
    public Parameter Values { get; }

    public int DeltaCount => (int)Values.Data.ElementCount;

    protected override Variable AdaptedForward(Variable input) =>
        Ops.SparseDeltaLinear(input, Weight, Indices, OutputScale == 1 ? Values : Ops.Affine(Values, OutputScale, 0), gradientObserver);

    public override Tensor DeltaWeight()
    {
        var delta = Tensor.Zeros([OutFeatures, InFeatures], Values.DType, Values.Device);
        delta.Backend.ScatterAddFlat(delta, Indices, Values.Data);
        return delta;
    }
}
