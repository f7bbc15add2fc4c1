namespace Engine.Peft.VbLora;

/// <summary>VB-LoRA settings. Defaults are peft's (VBLoRAConfig); the learning rates are the paper's.</summary>
public sealed record VbLoraOptions
{
    /// <summary>r: rank of every composed A [r, in] and B [out, r].</summary>
    public int Rank { get; init; } = 4;

    /// <summary>num_vectors: N, the vectors in the shared bank.</summary>
    public int VectorCount { get; init; } = 256;

    /// <summary>vector_length: L; every targeted layer's in and out features must be multiples of it.</summary>
    public int VectorLength { get; init; } = 256;

    /// <summary>topk: how many bank vectors each sub-vector mixes (the paper's ablation found 2 best).</summary>
    public int TopK { get; init; } = 2;

    /// <summary>vblora_dropout: dropout on the adapter's input, in training.</summary>
    public double Dropout { get; init; }

    /// <summary>init_vector_bank_bound: the bank starts ~ U(−bound, bound).</summary>
    public double BankInitBound { get; init; } = 0.02;

    /// <summary>init_logits_std: logits start ~ N(0, std).</summary>
    public double LogitsInitStd { get; init; } = 0.1;

    /// <summary>The paper's AdamW rate for the bank.</summary>
    public double BankLearningRate { get; init; } = 1e-3;

    /// <summary>The paper's AdamW rate for the logits.</summary>
    public double LogitsLearningRate { get; init; } = 1e-2;

    /// <summary>save_only_topk_weights: store each sub-vector's top-k indices and k−1 weights instead of all N logits.</summary>
    public bool SaveOnlyTopKWeights { get; init; }

    public TargetModules Targets { get; init; } = TargetModules.AllLinear;

    public ulong Seed { get; init; }

    internal void Validate()
    {
        if (Rank < 1 || VectorCount < 1 || VectorLength < 1)
        {
            throw new ArgumentException($"vblora: rank ({Rank}), number of vectors ({VectorCount}) and vector length ({VectorLength}) must all be at least 1");
        }
        if (TopK < 1 || TopK > VectorCount)
        {
            throw new ArgumentException($"vblora: top-k must be between 1 and the number of vectors {VectorCount}, got {TopK}");
        }
        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw new ArgumentException($"vblora: dropout must be in [0, 1), got {Dropout}");
        }
        if (!(BankInitBound >= 0) || !(LogitsInitStd >= 0) || !(BankLearningRate >= 0) || !(LogitsLearningRate >= 0))
        {
            throw new ArgumentException("vblora: the bank bound, logits std and both learning rates must be non-negative numbers");
        }
    }

    /// <summary>Bytes per stored top-k index, as peft picks the dtype: U8 below 2^8 vectors, I16 below 2^15, I32 otherwise.</summary>
    public int IndexBytes => VectorCount < 1 << 8 ? 1 : VectorCount < 1 << 15 ? 2 : 4;

    /// <summary>The safetensors dtype of stored top-k indices.</summary>
    public string IndexDType => IndexBytes switch { 1 => "U8", 2 => "I16", _ => "I32" };
}
