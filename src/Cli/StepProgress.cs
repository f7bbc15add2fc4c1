using System.Collections.Concurrent;
using System.Globalization;
using Engine.Training;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Engine.Cli;

/// <summary>
/// Shows training progress per phase (step, loss, eval loss, tokens/s, ETA): a live Spectre progress display when
/// stderr is a terminal, otherwise a plain line every tenth of a phase or 30 seconds, whichever comes first (logs, pipes, tests).
/// </summary>
internal sealed class StepProgress
{
    /// <summary>Without a live display, a line at least this often (besides every tenth of the phase).</summary>
    private const double PrintIntervalSeconds = 30;

    private readonly CliContext cli;
    private readonly ProgressContext? live;
    private readonly StatusColumn statusColumn;
    private readonly Dictionary<string, Phase> phases = [];

    private StepProgress(CliContext cli, ProgressContext? live, StatusColumn statusColumn)
    {
        this.cli = cli;
        this.live = live;
        this.statusColumn = statusColumn;
    }

    private sealed class Phase(ProgressTask? task, int firstStep)
    {
        public ProgressTask? Task { get; } = task;

        public int FirstStep { get; } = firstStep;

        public int LastPrintedStep { get; set; }

        public double LastPrintedSeconds { get; set; }

        /// <summary>Shown until the next evaluation.</summary>
        public double? LastEvalLoss { get; set; }
    }

    /// <summary>Runs <paramref name="work"/> with a progress display that lasts as long as it does.</summary>
    public static T Run<T>(CliContext cli, Func<StepProgress, T> work)
    {
        var statusColumn = new StatusColumn();
        if (!cli.IsInteractive)
        {
            return work(new StepProgress(cli, null, statusColumn));
        }
        return cli.ErrorConsole.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn { Width = 20 }, statusColumn)
            .Start(context => work(new StepProgress(cli, context, statusColumn)));
    }

    /// <summary>A line of text above the progress bars (or on its own line without a live display).</summary>
    public void Message(string text)
    {
        if (live is null)
        {
            cli.Note(text);
        }
        else
        {
            cli.ErrorConsole.MarkupLine(Markup.Escape(text));
        }
    }

    /// <summary>Records a finished step of <paramref name="phase"/>, which ends at step <paramref name="totalSteps"/>.</summary>
    public void Report(string phase, StepMetrics metrics, int totalSteps)
    {
        if (!phases.TryGetValue(phase, out var state))
        {
            state = new Phase(live?.AddTask(Markup.Escape(phase), maxValue: totalSteps), metrics.Step);
            phases[phase] = state;
        }
        // ElapsedSeconds counts from this run's first step, so after a resume the rate reflects this run only.
        int stepsThisRun = metrics.Step - state.FirstStep + 1;
        var remaining = TimeSpan.FromSeconds(metrics.ElapsedSeconds / stepsThisRun * (totalSteps - metrics.Step));
        state.LastEvalLoss = metrics.EvalLoss ?? state.LastEvalLoss;
        string status = Status(metrics, state.LastEvalLoss, totalSteps, remaining);
        if (state.Task is { } task)
        {
            statusColumn.Set(task, status);
            task.Value = metrics.Step;
            return;
        }
        bool due = state.LastPrintedStep == 0 || metrics.Step == totalSteps || metrics.EvalLoss is not null
            || metrics.Step - state.LastPrintedStep >= Math.Max(1, totalSteps / 10) || metrics.ElapsedSeconds - state.LastPrintedSeconds >= PrintIntervalSeconds;
        if (due)
        {
            cli.Note($"{phase}  {status}");
            state.LastPrintedStep = metrics.Step;
            state.LastPrintedSeconds = metrics.ElapsedSeconds;
        }
    }

    private static string Status(StepMetrics metrics, double? lastEvalLoss, int totalSteps, TimeSpan remaining)
    {
        var text = string.Create(CultureInfo.InvariantCulture, $"step {metrics.Step}/{totalSteps}  loss {metrics.Loss:F4}");
        if (lastEvalLoss is { } evalLoss)
        {
            text += string.Create(CultureInfo.InvariantCulture, $"  eval {evalLoss:F4}");
        }
        return text + string.Create(CultureInfo.InvariantCulture, $"  {metrics.TokensPerSecond:N0} tok/s  ETA {(int)remaining.TotalHours}:{remaining:mm\\:ss}");
    }

    /// <summary>Renders each task's latest status line (written by the training thread, read by the render thread).</summary>
    private sealed class StatusColumn : ProgressColumn
    {
        private readonly ConcurrentDictionary<int, string> statuses = new();

        /// <summary>Cropped rather than wrapped on a narrow terminal, so each phase stays on one line.</summary>
        protected override bool NoWrap => true;

        public void Set(ProgressTask task, string status) => statuses[task.Id] = status;

        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(statuses.GetValueOrDefault(task.Id, ""));
    }
}
