using Engine.Model;
using Engine.Training;
using Engine.Training.Data;
using Engine.Training.Ist;

namespace Engine.Cli;

/// <summary>What pretrain and train hand to <see cref="TrainingRun"/>.</summary>
/// <param name="Phase">"pretrain" or "train": names the progress bar and the plot.</param>
/// <param name="TokenizerSource">Folder or tokenizer.json copied next to the final model.</param>
internal sealed record TrainingJob(
    string Phase, LlamaModel Model, ITrainingMethod Method, BatcherSource Batches, TrainingOptions Options, IReadOnlyList<Batch> EvalBatches,
    bool Resume, string? TokenizerSource);

/// <summary>
/// The part pretrain and train share: resume, the step loop with progress and Ctrl+C, then the final model, the
/// tokenizer and loss.png in the output folder (metrics.csv and checkpoint/ are the trainer's).
/// </summary>
internal static class TrainingRun
{
    public const int InterruptedExitCode = 130;

    public static int Execute(CliContext cli, TrainingJob job)
    {
        string output = job.Options.OutputDirectory!;
        string checkpoint = Path.Combine(output, "checkpoint");
        Directory.CreateDirectory(output);
        using var trainer = new Trainer(job.Model, job.Method, job.Batches, job.Options, job.EvalBatches);
        if (job.Resume)
        {
            cli.Note(trainer.TryResume()
                ? $"resuming from {checkpoint} at step {trainer.CompletedSteps} of {job.Options.MaxSteps}"
                : $"--resume: no checkpoint in {checkpoint} yet; starting at step 0");
        }

        using (var interrupt = new InterruptSignal(cli))
        {
            StepProgress.Run(cli, progress =>
            {
                trainer.StepCompleted += metrics => progress.Report(job.Phase, metrics, job.Options.MaxSteps);
                return trainer.Train(interrupt.Token);
            });
        }
        WritePlot(cli, output, $"{job.Phase}: {Path.GetFileName(Path.GetFullPath(output))}");

        if (trainer.CompletedSteps < job.Options.MaxSteps)
        {
            if (trainer.CompletedSteps == 0)
            {
                cli.Note("interrupted before the first step; nothing saved");
                return InterruptedExitCode;
            }
            SaveInterruptedCheckpoint(trainer, job);
            cli.Note($"interrupted after step {trainer.CompletedSteps}; checkpoint in {checkpoint}; continue with the same command and --resume");
            return InterruptedExitCode;
        }
        job.Method.SaveResult(job.Model, output);
        if (job.TokenizerSource is { } tokenizer)
        {
            ModelFolder.CopyTokenizer(tokenizer, output);
        }
        var last = MetricsLog.Read(Path.Combine(output, "metrics.csv")).LastOrDefault();
        string losses = last is null ? "" : $"; final loss {last.Loss:F4}" + (last.EvalLoss is { } eval ? $", eval loss {eval:F4}" : "");
        var adapter = job.Method switch { AdapterTraining training => training.Adapter, IstTraining ist => ist.Adapter, _ => null };
        string result = adapter is null ? "model" : $"{adapter.PeftType} adapter ({adapter.ParameterGroups.SelectMany(group => group.Parameters).Sum(p => p.Data.ElementCount):N0} trained parameters)";
        cli.Out.WriteLine($"{job.Phase}: {trainer.CompletedSteps} steps{losses}; {result} saved to {output}");
        return 0;
    }

    /// <summary>Writes OUT/loss.png from OUT/metrics.csv; a failure only warns, since the model matters more than its plot.</summary>
    public static void WritePlot(CliContext cli, string directory, string title)
    {
        string metrics = Path.Combine(directory, "metrics.csv");
        if (!File.Exists(metrics))
        {
            return;
        }
        try
        {
            LossPlot.Write(metrics, Path.Combine(directory, LossPlot.FileName), title);
        }
        catch (Exception error) when (error is not OutOfMemoryException)
        {
            cli.Warn($"could not write {Path.Combine(directory, LossPlot.FileName)}: {error.Message}");
        }
    }

    /// <summary>
    /// The trainer checkpoints on its own schedule; after an interrupt the steps since its last checkpoint would be lost,
    /// so the same state it would write (method parameters, optimizer, data position) is saved here.
    /// </summary>
    private static void SaveInterruptedCheckpoint(Trainer trainer, TrainingJob job)
    {
        int every = job.Options.CheckpointEvery;
        if (every > 0 && trainer.CompletedSteps % every == 0)
        {
            return;
        }
        trainer.SaveCheckpoint();
    }
}
