namespace Engine.Training.Ist;

/// <summary>IST's settings; defaults are the reference implementation's (ist.md), where they are hard-coded.</summary>
public sealed record IstOptions
{
    /// <summary>Fraction of decoder layers whose adapters train each step (at least one layer).</summary>
    public double ActiveFraction { get; init; } = 0.25;

    /// <summary>Fraction of layers suppressed in each scoring action.</summary>
    public double SuppressedFraction { get; init; } = 0.5;

    /// <summary>What a suppressed layer's adapter output is multiplied by during scoring.</summary>
    public double SuppressionFactor { get; init; } = 0.25;

    /// <summary>Scoring actions (forward passes on the reward batch) per score update.</summary>
    public int Actions { get; init; } = 3;

    public double ScoreLearningRate { get; init; } = 10;

    /// <summary>Steps between score updates.</summary>
    public int UpdateInterval { get; init; } = 10;

    /// <summary>Examples in the reward batch the scoring forward passes run on.</summary>
    public int RewardBatchSize { get; init; } = 16;

    public ulong Seed { get; init; }

    internal void Validate()
    {
        if (!(ActiveFraction > 0 && ActiveFraction <= 1) || !(SuppressedFraction > 0 && SuppressedFraction < 1))
        {
            throw new ArgumentException($"ist: the active fraction must be in (0, 1] and the suppressed fraction in (0, 1), got {ActiveFraction} and {SuppressedFraction}");
        }
        if (Actions < 1 || UpdateInterval < 1 || RewardBatchSize < 1 || !(SuppressionFactor >= 0) || !double.IsFinite(ScoreLearningRate))
        {
            throw new ArgumentException($"ist: actions ({Actions}), update interval ({UpdateInterval}) and reward batch ({RewardBatchSize}) must be at least 1, " +
                $"the suppression factor ({SuppressionFactor}) non-negative and the score learning rate ({ScoreLearningRate}) finite");
        }
    }
}
