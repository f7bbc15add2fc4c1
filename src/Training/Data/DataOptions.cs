namespace Engine.Training.Data;

/// <summary>What to do with an example longer than <see cref="DataOptions.MaxLength"/>.</summary>
public enum OverlengthPolicy
{
    /// <summary>Keep its first MaxLength tokens (the EOS is then lost).</summary>
    Truncate,

    /// <summary>Leave it out.</summary>
    Drop,
}

/// <summary>How <see cref="JsonlDataset.Load"/> turns lines into examples.</summary>
public sealed record DataOptions
{
    public static DataOptions Default { get; } = new();

    /// <summary>Put BOS before each text example; null means "when the tokenizer has a BOS".</summary>
    public bool? AddBos { get; init; }

    /// <summary>Put EOS after each text example; null means "when the tokenizer has an EOS".</summary>
    public bool? AddEos { get; init; }

    /// <summary>Longest example in tokens (BOS and EOS included), or null for no limit.</summary>
    public int? MaxLength { get; init; }

    public OverlengthPolicy Overlength { get; init; } = OverlengthPolicy.Truncate;

    /// <summary>Skip lines that are empty or white space; when false they are errors.</summary>
    public bool SkipBlankLines { get; init; } = true;

    /// <summary>
    /// Ids must be below this; null means the tokenizer's <c>VocabularySize</c>, or no check without a tokenizer.
    /// Set it to the model's embedding size when that is larger than the tokenizer's vocabulary.
    /// </summary>
    public int? VocabularySize { get; init; }
}
