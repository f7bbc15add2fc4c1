namespace Engine.Peft.Lora;

/// <summary>LoRA settings (peft's LoraConfig names in the comments).</summary>
public sealed record LoraOptions
{
    /// <summary>r: the rank of A [r, in] and B [out, r].</summary>
    public int Rank { get; init; } = 8;

    /// <summary>lora_alpha: the scale is alpha / r (alpha / sqrt(r) with rsLoRA).</summary>
    public double Alpha { get; init; } = 8;

    /// <summary>use_rslora: scale alpha / sqrt(r), which keeps the update size stable as r grows.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>lora_dropout: dropout on the adapter's input only, in training.</summary>
    public double Dropout { get; init; }

    public TargetModules Targets { get; init; } = TargetModules.AllLinear;

    /// <summary>Seeds A's initialisation, dropout, and LoRA-SP's masks.</summary>
    public ulong Seed { get; init; }

    /// <summary>LoRA-SP: freeze part of A and B (null: plain LoRA).</summary>
    public LoraSparsityOptions? Sparsity { get; init; }

    public double Scale => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    internal void Validate()
    {
        if (Rank < 1)
        {
            throw new ArgumentException($"lora: rank must be at least 1, got {Rank}");
        }
        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new ArgumentException($"lora: dropout must be in [0, 1), got {Dropout}");
        }
        if (!double.IsFinite(Alpha))
        {
            throw new ArgumentException($"lora: alpha must be finite, got {Alpha}");
        }
        Sparsity?.Validate();
    }
}

/// <summary>Which entries LoRA-SP freezes together.</summary>
public enum FreezeGranularity
{
    /// <summary>Single entries of A and B.</summary>
    Element,

    /// <summary>Whole rank components: a row of A together with the same column of B.</summary>
    Row,
}

/// <summary>LoRA-SP: a seeded random part of A and B stays frozen at its initial value.</summary>
public sealed record LoraSparsityOptions
{
    /// <summary>The fraction of entries (or rank components) frozen in each of A and B.</summary>
    public double FrozenFraction { get; init; } = 0.5;

    public FreezeGranularity Granularity { get; init; } = FreezeGranularity.Element;

    /// <summary>Redraw the masks every N optimizer steps (0: draw once, the default).</summary>
    public int RedrawEvery { get; init; }

    internal void Validate()
    {
        if (!(FrozenFraction >= 0 && FrozenFraction < 1))
        {
            throw new ArgumentException($"lora-sp: the frozen fraction must be in [0, 1), got {FrozenFraction}");
        }
        if (RedrawEvery < 0)
        {
            throw new ArgumentException($"lora-sp: redraw-every must be 0 (draw once) or a positive step count, got {RedrawEvery}");
        }
    }
}
