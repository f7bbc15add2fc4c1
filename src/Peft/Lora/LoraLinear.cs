using Engine.Autograd;
using Engine.Model;

namespace Engine.Peft.Lora;

/// <summary>
/// y = x Wᵀ + s · (dropout(x) Aᵀ) Bᵀ as one fused operation (<see cref="Ops.LoraLinear"/>): the base GEMM and the
/// low-rank path share one pass and one backward, and B·A is never formed.
/// </summary>
public sealed class LoraLinear : AdaptedLinear
{
    private readonly Func<double, ulong?> dropoutSeed;

    internal LoraLinear(ILinearLayer baseLayer, int rank, LoraFactor a, LoraFactor b, double scale, double dropout, Func<double, ulong?> dropoutSeed) : base(baseLayer)
    {
        Rank = rank;
        A = a;
        B = b;
        Scale = scale;
        Dropout = dropout;
        this.dropoutSeed = dropoutSeed;
    }

    internal LoraFactor A { get; }

    internal LoraFactor B { get; }

    public double Scale { get; }

    public double Dropout { get; }

    public int Rank { get; }

    /// <summary>
    /// LoRA-SP with rank-component masks: frozen components whose B columns are zero add nothing, so the layer runs at the
    /// trainable rank only. The trainable entries, in ascending flat order, are then exactly A's live rows [r', in] and
    /// B's live columns [out, r'], so no scatter and no dense gradient of A or B is needed either.
    /// </summary>
    internal bool SkipsFrozenComponents => CompactRankComponents && A is SplitFactor && B is SplitFactor { FrozenIsZero: true };

    internal bool CompactRankComponents { get; set; }

    protected override Variable AdaptedForward(Variable input)
    {
        ulong? seed = dropoutSeed(Dropout);
        double dropout = seed is null ? 0 : Dropout;
        if (SkipsFrozenComponents)
        {
            var liveA = ((SplitFactor)A).Values;
            var liveB = ((SplitFactor)B).Values;
            int liveRank = (int)(liveA.Data.ElementCount / InFeatures);
            return Ops.LoraLinear(input, Weight, Ops.Reshape(liveA, liveRank, InFeatures), Ops.Reshape(liveB, OutFeatures, liveRank), Scale * OutputScale, dropout, seed ?? 0);
        }
        return Ops.LoraLinear(input, Weight, A.Compose(), B.Compose(), Scale * OutputScale, dropout, seed ?? 0);
    }

    public override Tensor DeltaWeight()
    {
        using var a = A.Value();
        using var b = B.Value();
        var delta = Tensor.Empty([OutFeatures, InFeatures], a.DType, a.Device);
        a.Backend.MatMul(b, a, delta, Scale, 0);
        return delta;
    }
}
