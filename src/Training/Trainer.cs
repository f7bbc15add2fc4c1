using System.Diagnostics;
using Engine.Autograd;
using Engine.Model;
using Engine.Training.Data;
using Engine.Training.Evaluation;
using Engine.Training.Optimization;

namespace Engine.Training;

/// <summary>
/// The training loop: gradient accumulation, global-norm clipping, AdamW with a warmup schedule, periodic evaluation,
/// NaN/Inf detection, metrics.csv, and atomic resumable checkpoints. On the CPU, a resumed run reproduces the losses of
/// an uninterrupted one exactly (every kernel is deterministic for a fixed thread count).
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly LlamaModel model;
    private readonly ITrainingMethod method;
    private readonly IBatchSource trainBatches;
    private readonly IReadOnlyList<Batch> evalBatches;
    private readonly IOptimizer optimizer;
    private readonly LearningRateSchedule schedule;
    private readonly IReadOnlyList<Parameter> trainable;

    public Trainer(LlamaModel model, ITrainingMethod method, IBatchSource trainBatches, TrainingOptions options, IReadOnlyList<Batch>? evalBatches = null)
    {
        if (options.MaxSteps < 0 || options.GradientAccumulation < 1)
        {
            throw new ArgumentException($"training options: max steps must be >= 0 (got {options.MaxSteps}) and gradient accumulation >= 1 (got {options.GradientAccumulation})");
        }
        if (options.CheckpointEvery > 0 && options.OutputDirectory is null)
        {
            throw new ArgumentException("training options: checkpoints need an output directory");
        }
        this.model = model;
        this.method = method;
        this.trainBatches = trainBatches;
        this.evalBatches = evalBatches ?? [];
        Options = options;
        var groups = method.Attach(model, options);
        trainable = groups.SelectMany(group => group.Parameters).ToList();
        optimizer = method.CreateOptimizer(groups, options);
        schedule = new LearningRateSchedule(options.Schedule, options.WarmupSteps, options.MaxSteps);
    }

    public TrainingOptions Options { get; }

    /// <summary>Steps completed so far (after a resume, counting the resumed ones).</summary>
    public int CompletedSteps { get; private set; }

    public IOptimizer Optimizer => optimizer;

    public event Action<StepMetrics>? StepCompleted;

    private string? CheckpointDirectory => Options.OutputDirectory is null ? null : Path.Combine(Options.OutputDirectory, "checkpoint");

    /// <summary>Continues from the output directory's checkpoint when one exists; returns whether it did.</summary>
    public bool TryResume()
    {
        if (CheckpointDirectory is not { } directory || !TrainingCheckpoint.Exists(directory))
        {
            return false;
        }
        var saved = TrainingCheckpoint.ReadState(directory);
        if (saved.Method != method.Name)
        {
            throw new InvalidDataException($"{directory}: the checkpoint was made by method '{saved.Method}', not '{method.Name}'");
        }
        if (saved.Seed != Options.Seed)
        {
            throw new InvalidDataException($"{directory}: the checkpoint was made with seed {saved.Seed}, this run has seed {Options.Seed}; resume with the same seed");
        }
        if (saved.Settings != method.Settings)
        {
            throw new InvalidDataException($"{directory}: the checkpoint was made with other '{method.Name}' settings; resume with the same ones " +
                $"(checkpoint: {saved.Settings}; now: {method.Settings})");
        }
        var state = TrainingCheckpoint.Load(directory, method.StateParameters, optimizer);
        trainBatches.RestoreState(state.DataState);
        CompletedSteps = state.Step;
        method.Resumed(state.Step);
        return true;
    }

    /// <summary>Runs the remaining steps; returns the metrics of each step run now.</summary>
    public IReadOnlyList<StepMetrics> Train(CancellationToken cancellation = default)
    {
        var history = new List<StepMetrics>();
        using var metricsLog = Options.OutputDirectory is null ? null : new MetricsLog(Path.Combine(Options.OutputDirectory, "metrics.csv"), CompletedSteps);
        var clock = Stopwatch.StartNew();
        while (CompletedSteps < Options.MaxSteps && !cancellation.IsCancellationRequested)
        {
            var metrics = Step() with { ElapsedSeconds = clock.Elapsed.TotalSeconds };
            history.Add(metrics);
            metricsLog?.Write(metrics);
            StepCompleted?.Invoke(metrics);
            if (Options.CheckpointEvery > 0 && (metrics.Step % Options.CheckpointEvery == 0 || metrics.Step == Options.MaxSteps))
            {
                SaveCheckpoint();
            }
        }
        return history;
    }

    /// <summary>
    /// One optimizer step: forward/backward over the micro-batches, clipping, the AdamW update, and evaluation when due.
    /// ElapsedSeconds in the result is this step's duration (Train replaces it with the run's elapsed time).
    /// </summary>
    public StepMetrics Step()
    {
        int step = CompletedSteps + 1;
        var clock = Stopwatch.StartNew();
        foreach (var parameter in method.BeforeStep(step))
        {
            optimizer.ResetState(parameter);
        }
        var (loss, tokens) = AccumulateGradients(step);
        double gradNorm = GradientClipping.ClipGlobalNorm(trainable, Options.MaxGradNorm);
        double learningRateScale = schedule.Multiplier(CompletedSteps);
        optimizer.Step(learningRateScale);
        foreach (var parameter in trainable)
        {
            parameter.ClearGrad();
        }
        CompletedSteps = step;
        double seconds = clock.Elapsed.TotalSeconds;
        double? evalLoss = evalBatches.Count > 0 && (step == Options.MaxSteps || (Options.EvalEvery > 0 && step % Options.EvalEvery == 0)) ? Evaluate(evalBatches) : null;
        return new StepMetrics(step, loss, Options.LearningRate * learningRateScale, gradNorm, tokens, tokens / Math.Max(seconds, 1e-9), evalLoss, seconds);
    }

    /// <summary>Forward and backward over the step's micro-batches; returns the mean micro-batch loss and the tokens processed.</summary>
    private (double Loss, long Tokens) AccumulateGradients(int step)
    {
        double lossSum = 0;
        long tokens = 0;
        for (int micro = 0; micro < Options.GradientAccumulation; micro++)
        {
            var batch = trainBatches.Next();
            using var scope = new TensorScope();
            using var tape = new Tape();
            var (inputIds, targets) = batch.ToTensors(model.Device);
            var loss = model.Loss(inputIds, targets);
            double value = loss.Data.Item();
            if (!double.IsFinite(value))
            {
                string checkpoint = CheckpointDirectory is { } directory && TrainingCheckpoint.Exists(directory) ? $"the last good checkpoint is {directory}" : "no checkpoint was written";
                throw new TrainingDivergedException($"training stopped: the loss became {value} at step {step} (micro-batch {micro + 1}); {checkpoint}");
            }
            // Each micro-batch's mean loss is scaled so the accumulated gradient is that of their average.
            var scaled = Options.GradientAccumulation == 1 ? loss : Ops.Affine(loss, 1.0 / Options.GradientAccumulation, 0);
            tape.Backward(scaled);
            lossSum += value;
            tokens += (long)batch.BatchSize * batch.SequenceLength;
        }
        return (lossSum / Options.GradientAccumulation, tokens);
    }

    /// <summary>Mean loss over every counted token of the batches (no gradients).</summary>
    public double Evaluate(IReadOnlyList<Batch> batches) => TokenLoss.Evaluate(model, batches).Loss;

    /// <summary>Writes a resumable checkpoint of the current state (also done on the CheckpointEvery schedule); needs an output directory.</summary>
    public void SaveCheckpoint()
    {
        if (CheckpointDirectory is not { } directory)
        {
            throw new InvalidOperationException("checkpoints need TrainingOptions.OutputDirectory");
        }
        TrainingCheckpoint.Save(directory, method.StateParameters, optimizer, new TrainingCheckpoint.State(CompletedSteps, trainBatches.SaveState(), method.Name, Options.Seed, method.Settings));
    }

    public void Dispose() => optimizer.Dispose();
}
