using Engine.Autograd;
using Engine.Model;

namespace Engine.Peft.VbLora;

/// <summary>
/// A VB-LoRA layer: A [r, in] and B [out, r] are composed from the shared bank at every forward (each length-L sub-vector
/// is the softmax-weighted mix of its top-k bank vectors, <see cref="Ops.TopKAdmixture"/>), then y = x Wᵀ + (dropout(x) Aᵀ) Bᵀ
/// runs as the fused LoRA operation with scale 1. ΔW = B A is never formed in training.
/// </summary>
public sealed class VbLoraLinear : AdaptedLinear
{
    private readonly Parameter bank;
    private readonly Func<double, ulong?> dropoutSeed;

    internal VbLoraLinear(ILinearLayer baseLayer, Parameter bank, Parameter logitsA, Parameter logitsB, int rank, int topK, double dropout, Func<double, ulong?> dropoutSeed)
        : base(baseLayer)
    {
        this.bank = bank;
        this.dropoutSeed = dropoutSeed;
        LogitsA = logitsA;
        LogitsB = logitsB;
        Rank = rank;
        TopK = topK;
        Dropout = dropout;
    }

    /// <summary>[r, in/L, N]: sub-vector j of A's row k fills columns [jL, (j+1)L).</summary>
    public Parameter LogitsA { get; }

    /// <summary>[out/L, r, N]: composed to [out/L, r, L], transposed to [out/L, L, r] and read as B [out, r] (peft's layout).</summary>
    public Parameter LogitsB { get; }

    public int Rank { get; }

    public int TopK { get; }

    public double Dropout { get; }

    /// <summary>A [r, in] and B [out, r] as graph nodes (gradients flow to the selected logits and into the bank).</summary>
    public (Variable A, Variable B) Compose()
    {
        var a = Ops.Reshape(Ops.TopKAdmixture(LogitsA, bank, TopK), Rank, InFeatures);
        var composedB = Ops.TopKAdmixture(LogitsB, bank, TopK);
        var b = Ops.Reshape(Ops.Transpose(composedB, 1, 2), OutFeatures, Rank);
        return (a, b);
    }

    protected override Variable AdaptedForward(Variable input)
    {
        var (a, b) = Compose();
        ulong? seed = dropoutSeed(Dropout);
        return Ops.LoraLinear(input, Weight, a, b, OutputScale, seed is null ? 0 : Dropout, seed ?? 0);
    }

    public override Tensor DeltaWeight()
    {
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        var (a, b) = Compose();
        var delta = Tensor.Empty([OutFeatures, InFeatures], a.DType, a.Device);
        delta.Backend.MatMul(b.Data, a.Data, delta, 1, 0);
        return scope.Keep(delta);
    }
}
