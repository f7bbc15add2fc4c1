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

    /// <summary>
    /// Multiplies the adapter's contribution (1: as trained). IST's scoring passes suppress layers with it; it is not
    /// saved and does not apply to a merged layer.
    /// </summary>
    public double OutputScale { get; set; } = 1;

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
        using (var merged = ShiftedWeight(1))
        {
            Weight.Data.CopyFrom(merged);
        }
        IsMerged = true;
    }

    internal void Unmerge()
    {
        if (!IsMerged)
        {
            throw new InvalidOperationException($"{Name}: the adapter is not merged, so there is nothing to unmerge");
        }
        using (var unmerged = ShiftedWeight(-1))
        {
            Weight.Data.CopyFrom(unmerged);
        }
        IsMerged = false;
    }

    /// <summary>Throws unless W + ΔW is finite (checked for every module before any weight changes).</summary>
    internal void CheckMergeable()
    {
        using var merged = ShiftedWeight(1);
    }

    /// <summary>
    /// W ± ΔW as a new tensor, checked finite (a non-finite merge would silently ruin the model) by one Σx² on the device.
    /// </summary>
    private Tensor ShiftedWeight(double sign)
    {
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        var weight = Weight.Data;
        var delta = DeltaWeight();
        var deltaCast = delta.To(weight.DType);
        weight.Backend.Affine(deltaCast, sign, 0, deltaCast);
        var result = Tensor.Empty(weight.Shape, weight.DType, weight.Device);
        weight.Backend.Binary(BinaryOp.Add, weight, deltaCast, result);
        // Scaled by 2^-100 (exact) so that no finite entry can overflow the sum; NaN and ±∞ survive the scaling.
        var scaled = Tensor.Empty(weight.Shape, weight.DType, weight.Device);
        weight.Backend.Affine(result, Math.Pow(2, -100), 0, scaled);
        var squares = Tensor.Empty([1], weight.DType, weight.Device);
        weight.Backend.SumOfSquares(scaled, squares);
        if (!double.IsFinite(squares.Item()))
        {
            throw new InvalidOperationException($"{Name}: {(sign > 0 ? "merging" : "unmerging")} the adapter would make the weight {weight.ShapeString} " +
                "non-finite (NaN or infinity in ΔW); no base weight was changed");
        }
        return scope.Keep(result);
    }
}
