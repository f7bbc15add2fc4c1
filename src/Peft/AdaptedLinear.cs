using Engine.Autograd;
using Engine.Model;

namespace Engine.Peft;

/// <summary>
/// A linear layer wrapped by an adapter. The base layer stays untouched (frozen); the adapter adds its own path in
/// <see cref="AdaptedForward"/>. Merging folds ΔW into the base weight so the layer runs as a plain linear layer again.
/// </summary>
public abstract class AdaptedLinear(ILinearLayer baseLayer) : ILinearLayer
{
    /// <summary>The wrapped layer (restored into the model when the adapter detaches).</summary>
    public ILinearLayer Base { get; } = baseLayer;

    public string Name => Base.Name;

    public int InFeatures => Base.InFeatures;

    public int OutFeatures => Base.OutFeatures;

    public Parameter Weight => Base.Weight;

    /// <summary>Whether ΔW is currently folded into the base weight.</summary>
    public bool IsMerged { get; private set; }

    public Variable Forward(Variable input) => IsMerged ? Base.Forward(input) : AdaptedForward(input);

    protected abstract Variable AdaptedForward(Variable input);

    /// <summary>ΔW [out, in] this adapter adds to the base weight, as a new tensor (formed only for merging).</summary>
    public abstract Tensor DeltaWeight();

    internal void Merge()
    {
        if (IsMerged)
        {
            throw new InvalidOperationException($"{Name}: the adapter is already merged into the base weight");
        }
        AddDelta(1);
        IsMerged = true;
    }

    internal void Unmerge()
    {
        if (!IsMerged)
        {
            throw new InvalidOperationException($"{Name}: the adapter is not merged, so there is nothing to unmerge");
        }
        AddDelta(-1);
        IsMerged = false;
    }

    /// <summary>W ± ΔW, checked finite before the base weight is touched (a non-finite merge would silently ruin the model).</summary>
    private void AddDelta(double sign)
    {
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        var weight = Weight.Data;
        using var delta = DeltaWeight();
        using var result = Tensor.Empty(weight.Shape, weight.DType, weight.Device);
        using var deltaCast = delta.To(weight.DType);
        weight.Backend.Affine(deltaCast, sign, 0, deltaCast);
        weight.Backend.Binary(BinaryOp.Add, weight, deltaCast, result);
        using var onHost = result.To(Device.Cpu);
        using var check = onHost.To(DType.Float64);
        int badIndex = Array.FindIndex(check.ToArray<double>(), value => !double.IsFinite(value));
        if (badIndex >= 0)
        {
            throw new InvalidOperationException($"{Name}: {(sign > 0 ? "merging" : "unmerging")} the adapter would make the weight non-finite " +
                $"(element {badIndex} of {weight.ShapeString}); the base weight was left unchanged");
        }
        weight.CopyFrom(result);
    }
}
