using System.CommandLine;
using System.CommandLine.Parsing;
using Engine.Training;
using Engine.Training.Optimization;

namespace Engine.Cli;

/// <summary>Options every command accepts (declared once on the root command, recursive).</summary>
internal sealed class GlobalOptions
{
    public Option<string> Device { get; } = new("--device")
    {
        Description = "Where tensors live: cpu, or auto (the best available backend; cpu in this build). cuda and ilgpu are not in this build yet.",
        DefaultValueFactory = _ => "cpu",
        Recursive = true,
    };

    public Option<int> Seed { get; } = new("--seed")
    {
        Description = "Seed for initialisation, data order and sampling.",
        DefaultValueFactory = _ => 1,
        Recursive = true,
    };

    public Option<int?> Threads { get; } = new("--threads")
    {
        Description = "CPU worker threads (default: all cores).",
        Recursive = true,
    };

    public Option<bool> Verbose { get; } = new("--verbose")
    {
        Description = "Show stack traces with errors.",
        Recursive = true,
    };

    public GlobalOptions()
    {
        OptionChecks.OneOf(Device, DeviceSelection.Names);
        OptionChecks.AtLeast(Threads, 1);
        OptionChecks.AtLeast(Seed, 0);
    }

    public void AddTo(RootCommand root)
    {
        root.Options.Add(Device);
        root.Options.Add(Seed);
        root.Options.Add(Threads);
        root.Options.Add(Verbose);
    }
}

/// <summary>The flags of the training commands (pretrain, train); each command gets its own instances and learning-rate default.</summary>
internal sealed class TrainingFlags
{
    public TrainingFlags(double defaultLearningRate)
    {
        LearningRate = new("--lr") { Description = "Peak learning rate.", DefaultValueFactory = _ => defaultLearningRate };
        OptionChecks.OneOf(Schedule, "linear", "cosine", "constant");
        OptionChecks.AtLeast(Steps, 1);
        OptionChecks.AtLeast(BatchSize, 1);
        OptionChecks.AtLeast(SequenceLength, 2);
        OptionChecks.AtLeast(Warmup, 0);
        OptionChecks.AtLeast(GradientAccumulation, 1);
        OptionChecks.AtLeast(EvalEvery, 0);
        OptionChecks.AtLeast(CheckpointEvery, 0);
        OptionChecks.Positive(LearningRate);
        OptionChecks.NotNegative(WeightDecay);
        OptionChecks.NotNegative(MaxGradNorm);
    }

    public Option<string> Data { get; } = new("--data") { Description = "Training data (JSON Lines: text, prompt/response or input_ids/labels).", Required = true, HelpName = "FILE" };

    public Option<string> Out { get; } = new("--out") { Description = "Output folder: the final model, metrics.csv, loss.png and checkpoint/.", Required = true, HelpName = "DIR" };

    public Option<int> Steps { get; } = new("--steps") { Description = "Total optimizer steps (a resumed run counts the steps already done).", DefaultValueFactory = _ => 100 };

    public Option<int> BatchSize { get; } = new("--batch-size") { Description = "Rows per micro-batch.", DefaultValueFactory = _ => 8 };

    public Option<int> SequenceLength { get; } = new("--seq-len") { Description = "Tokens per row (packing), or the longest example kept (padding; longer ones are truncated).", DefaultValueFactory = _ => 128 };

    public Option<double> LearningRate { get; }

    public Option<int?> Warmup { get; } = new("--warmup") { Description = "Linear warmup steps (default: 5% of --steps)." };

    public Option<string> Schedule { get; } = new("--schedule") { Description = "Learning-rate decay after warmup.", DefaultValueFactory = _ => "cosine" };

    public Option<double> WeightDecay { get; } = new("--weight-decay") { Description = "AdamW decoupled weight decay (norms get none).", DefaultValueFactory = _ => 0.0 };

    public Option<int> GradientAccumulation { get; } = new("--grad-accum") { Description = "Micro-batches per optimizer step.", DefaultValueFactory = _ => 1 };

    public Option<double> MaxGradNorm { get; } = new("--max-grad-norm") { Description = "Global gradient-norm clipping threshold (0: no clipping).", DefaultValueFactory = _ => 1.0 };

    public Option<string?> EvalData { get; } = new("--eval-data") { Description = "Evaluation data (JSON Lines); its loss is logged as eval_loss.", HelpName = "FILE" };

    public Option<int> EvalEvery { get; } = new("--eval-every") { Description = "Evaluate every N steps (0: after the last step only). Needs --eval-data.", DefaultValueFactory = _ => 0 };

    public Option<int> CheckpointEvery { get; } = new("--checkpoint-every") { Description = "Write OUT/checkpoint every N steps and after the last (0: never).", DefaultValueFactory = _ => 100 };

    public Option<bool> Resume { get; } = new("--resume") { Description = "Continue from OUT/checkpoint (same data, seed and --steps give the losses of an uninterrupted run)." };

    public void AddTo(Command command)
    {
        foreach (Option option in new Option[] { Data, Out, Steps, BatchSize, SequenceLength, LearningRate, Warmup, Schedule, WeightDecay, GradientAccumulation, MaxGradNorm, EvalData, EvalEvery, CheckpointEvery, Resume })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>The trainer's options; refuses to overwrite an existing checkpoint unless --resume is given.</summary>
    public TrainingOptions ToTrainingOptions(ParseResult parse, int seed)
    {
        int steps = parse.GetValue(Steps);
        string output = parse.GetRequiredValue(Out);
        if (parse.GetValue(EvalEvery) > 0 && parse.GetValue(EvalData) is null)
        {
            throw new UsageException("--eval-every needs --eval-data");
        }
        string checkpoint = Path.Combine(output, "checkpoint");
        if (!parse.GetValue(Resume) && TrainingCheckpoint.Exists(checkpoint))
        {
            throw new UsageException($"{checkpoint} holds a training checkpoint: pass --resume to continue it, or choose another --out");
        }
        return new TrainingOptions
        {
            MaxSteps = steps,
            GradientAccumulation = parse.GetValue(GradientAccumulation),
            LearningRate = parse.GetValue(LearningRate),
            WeightDecay = parse.GetValue(WeightDecay),
            Schedule = Enum.Parse<ScheduleKind>(parse.GetRequiredValue(Schedule), ignoreCase: true),
            WarmupSteps = parse.GetValue(Warmup) ?? steps / 20,
            MaxGradNorm = parse.GetValue(MaxGradNorm),
            EvalEvery = parse.GetValue(EvalEvery),
            CheckpointEvery = parse.GetValue(CheckpointEvery),
            Seed = (ulong)seed,
            OutputDirectory = output,
        };
    }
}

/// <summary>Range checks reported as parse errors (one red line naming the flag).</summary>
internal static class OptionChecks
{
    public static void AtLeast(Option<int> option, int minimum) => Check(option, value => value >= minimum, $"must be at least {minimum}");

    public static void AtLeast(Option<int?> option, int minimum) => Check(option, value => value is null || value >= minimum, $"must be at least {minimum}");

    public static void Positive(Option<double> option) => Check(option, value => value > 0, "must be positive");

    public static void NotNegative(Option<double> option) => Check(option, value => value >= 0, "must not be negative");

    /// <summary>
    /// Accepts only <paramref name="values"/> (offered as completions and shown in help). Used instead of AcceptOnlyFromAmong,
    /// whose error spreads the values over several lines and does not name the flag.
    /// </summary>
    public static void OneOf(Option<string> option, params string[] values)
    {
        option.CompletionSources.Add(values);
        Check(option, values.Contains, $"must be one of {string.Join(", ", values)}");
    }

    public static void Check<T>(Option<T> option, Func<T, bool> isValid, string requirement) =>
        option.Validators.Add(result =>
        {
            var value = result.GetValueOrDefault<T>();
            if (!isValid(value))
            {
                result.AddError($"{option.Name} {requirement} (got {value})");
            }
        });
}
