using Engine.Autograd;
using Engine.Model;
using Engine.Training.Data;
using Engine.Training.Optimization;

namespace Engine.Training;

/// <summary>An endless, resumable stream of training batches.</summary>
public interface IBatchSource
{
    Batch Next();

    /// <summary>An opaque description of the position in the stream (stored in checkpoints).</summary>
    string SaveState();

    /// <summary>Continues from a position returned by <see cref="SaveState"/>: the next batch is the one that would have followed.</summary>
    void RestoreState(string state);
}

/// <summary>
/// The extension point for fine-tuning methods (full fine-tuning, LoRA, SpIEL, IST, MEFT...): what trains, in which
/// parameter groups, what a checkpoint must store, and what the finished run writes.
/// </summary>
public interface ITrainingMethod
{
    string Name { get; }

    /// <summary>Prepares the model (freezing, inserting adapters) and returns the optimizer's parameter groups.</summary>
    IReadOnlyList<ParameterGroup> Attach(LlamaModel model, TrainingOptions options);

    /// <summary>Settings a checkpoint records and a resume must match (an adapter's config); empty when nothing beyond the name matters.</summary>
    string Settings => "";

    /// <summary>Parameters whose values a training checkpoint stores (everything that changes during training).</summary>
    IReadOnlyList<Parameter> StateParameters { get; }

    /// <summary>
    /// Called before each optimizer step (layer selection, mask redraws, reselection...). Returns the parameters whose
    /// optimizer state no longer fits their entries (a redrawn mask), which the optimizer then starts afresh.
    /// </summary>
    IReadOnlyList<Parameter> BeforeStep(int step) => [];

    /// <summary>Called after a checkpoint restored <see cref="StateParameters"/>, with the steps it had completed.</summary>
    void Resumed(int completedSteps)
    {
    }

    /// <summary>The optimizer over the groups <see cref="Attach"/> returned (AdamW unless the method brings its own).</summary>
    IOptimizer CreateOptimizer(IReadOnlyList<ParameterGroup> groups, TrainingOptions options) => new AdamW(groups, options.Adam);

    /// <summary>Writes the result of training (a full model, an adapter folder...).</summary>
    void SaveResult(LlamaModel model, string directory);
}

/// <summary>Full fine-tuning: every base parameter trains; the result is a complete Hugging Face model folder.</summary>
public sealed class FullFineTuning : ITrainingMethod
{
    private IReadOnlyList<Parameter> parameters = [];

    public string Name => "full";

    public IReadOnlyList<Parameter> StateParameters => parameters;

    public IReadOnlyList<ParameterGroup> Attach(LlamaModel model, TrainingOptions options)
    {
        model.SetBaseTrainable(true);
        parameters = model.Parameters;
        // As is customary (and in HF's Trainer), norms get no weight decay.
        var decayed = parameters.Where(p => p.Rank >= 2).ToList();
        var undecayed = parameters.Where(p => p.Rank < 2).ToList();
        return
        [
            new ParameterGroup("weights", decayed, options.LearningRate, options.WeightDecay),
            new ParameterGroup("norms", undecayed, options.LearningRate, 0),
        ];
    }

    public void SaveResult(LlamaModel model, string directory) => model.Save(directory);
}

public sealed record TrainingOptions
{
    /// <summary>Optimizer steps to run (each over <see cref="GradientAccumulation"/> micro-batches).</summary>
    public int MaxSteps { get; init; } = 100;

    public int GradientAccumulation { get; init; } = 1;

    public double LearningRate { get; init; } = 1e-3;

    public double WeightDecay { get; init; }

    public ScheduleKind Schedule { get; init; } = ScheduleKind.Cosine;

    public int WarmupSteps { get; init; }

    /// <summary>Global-norm clipping threshold; 0 disables clipping.</summary>
    public double MaxGradNorm { get; init; } = 1.0;

    /// <summary>Evaluate every N steps (0: only after the last step); needs evaluation batches.</summary>
    public int EvalEvery { get; init; }

    /// <summary>Write a resumable checkpoint every N steps (0: never). Needs an output directory.</summary>
    public int CheckpointEvery { get; init; }

    public ulong Seed { get; init; }

    /// <summary>Where metrics.csv and the checkpoint go; null keeps everything in memory.</summary>
    public string? OutputDirectory { get; init; }

    public AdamWOptions Adam { get; init; } = new();
}

/// <summary>One logged optimizer step.</summary>
public sealed record StepMetrics(int Step, double Loss, double LearningRate, double GradNorm, long Tokens, double TokensPerSecond, double? EvalLoss, double ElapsedSeconds);

/// <summary>Raised when the loss stops being finite; the message names the step and the last good checkpoint.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
