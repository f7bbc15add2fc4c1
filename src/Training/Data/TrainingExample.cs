namespace Engine.Training.Data;

/// <summary>
/// One tokenized training sequence. <see cref="Labels"/> is aligned with <see cref="InputIds"/>: <c>Labels[t]</c> is
/// <c>InputIds[t]</c> when the model is trained to predict token t (from tokens before it), and
/// <see cref="IgnoreLabel"/> when it is not (prompt tokens, BOS, padding).
/// </summary>
public sealed record TrainingExample
{
    /// <summary>The label of a position that takes no loss (PyTorch's ignore_index).</summary>
    public const int IgnoreLabel = -100;

    /// <exception cref="ArgumentException">The arrays differ in length or are empty.</exception>
    public TrainingExample(int[] inputIds, int[] labels)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(labels);
        if (inputIds.Length == 0)
        {
            throw new ArgumentException("A training example needs at least one token.", nameof(inputIds));
        }

        if (labels.Length != inputIds.Length)
        {
            throw new ArgumentException($"Labels has {labels.Length} entries but InputIds has {inputIds.Length}.", nameof(labels));
        }

        InputIds = inputIds;
        Labels = labels;
    }

    public int[] InputIds { get; }

    public int[] Labels { get; }

    public int Length => InputIds.Length;

    /// <summary>Number of positions that take loss.</summary>
    public int SupervisedCount => Labels.Count(label => label != IgnoreLabel);
}
