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

    protected override Variable AdaptedForward(Variable input)
    {
        ulong? seed = dropoutSeed(Dropout);
        return Ops.LoraLinear(input, Weight, A.Compose(), B.Compose(), Scale, seed is null ? 0 : Dropout, seed ?? 0);
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
