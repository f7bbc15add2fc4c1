namespace Engine.Training.Data;

/// <summary>How examples are laid out in rows.</summary>
public enum BatchingMode
{
    /// <summary>
    /// Examples (each followed by <see cref="BatcherOptions.SeparatorId"/> unless it already ends with it) are
    /// concatenated into one stream per epoch that is cut into rows of SequenceLength tokens; attention may cross
    /// example boundaries. Label masks (e.g. prompts) are kept.
    /// </summary>
    Packing,

    /// <summary>One example per row, right-padded with <see cref="BatcherOptions.PadId"/>; padded positions take no loss.</summary>
    Padding,
}

public sealed record BatcherOptions
{
    /// <summary>Rows per batch.</summary>
    public required int BatchSize { get; init; }

    /// <summary>
    /// Tokens per row in packing mode; in padding mode the fixed row length (<see cref="PadToSequenceLength"/>) or the
    /// cap on the longest example, which no example may exceed (limit them with DataOptions.MaxLength).
    /// </summary>
    public required int SequenceLength { get; init; }

    public BatchingMode Mode { get; init; } = BatchingMode.Packing;

    /// <summary>Padding mode: pad every row to SequenceLength instead of to the batch's longest example.</summary>
    public bool PadToSequenceLength { get; init; }

    /// <summary>Id written into padded positions (the tokenizer's PadId, or 0).</summary>
    public int PadId { get; init; }

    /// <summary>
    /// Packing mode: token put between examples (normally the EOS id), labelled so the model learns to end an
    /// example; not added after an example that already ends with it. Null packs examples back to back.
    /// </summary>
    public int? SeparatorId { get; init; }

    /// <summary>Shuffle the example order each epoch, reproducibly from (<see cref="Seed"/>, epoch).</summary>
    public bool Shuffle { get; init; } = true;

    public int Seed { get; init; }

    /// <summary>
    /// Leave out an epoch's last batch when it has fewer than BatchSize rows (and, in packing mode, a final row
    /// shorter than SequenceLength); otherwise the last batch is smaller and a short final row is padded.
    /// </summary>
    public bool DropLast { get; init; }
}
