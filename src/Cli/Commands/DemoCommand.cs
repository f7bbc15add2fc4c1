using System.CommandLine;
using System.Globalization;
using Engine.Cpu;
using Engine.Training.Demo;
using Spectre.Console;

namespace Engine.Cli.Commands;

/// <summary>
/// <c>engine demo</c>: runs the built-in demo (synthetic world, cached tiny base model, one fine-tuning run per method),
/// shows each phase's progress, prints the comparison table, and writes a loss curve next to every metrics.csv.
/// </summary>
internal static class DemoCommand
{
    public static Command Create(CliContext cli)
    {
        var defaults = new DemoOptions();
        var output = new Option<string>("--out") { Description = "Output folder (data, cached base model, runs, report.md).", DefaultValueFactory = _ => defaults.OutputDirectory, HelpName = "DIR" };
        var forcePretrain = new Option<bool>("--force-pretrain") { Description = "Pretrain again even when a cached base model with the same settings exists." };
        var pretrainSteps = new Option<int>("--pretrain-steps") { Description = "Pretraining steps of the base model.", DefaultValueFactory = _ => defaults.PretrainSteps };
        var fineTuneSteps = new Option<int>("--finetune-steps") { Description = "Fine-tuning steps per method.", DefaultValueFactory = _ => defaults.FineTuneSteps };
        var methods = new Option<string[]>("--methods")
        {
            Description = $"Methods to compare (default: all): {string.Join(", ", defaults.Methods.Select(method => method.Key))}.",
            AllowMultipleArgumentsPerToken = true,
        };
        string[] methodKeys = [.. defaults.Methods.Select(method => method.Key)];
        methods.CompletionSources.Add(methodKeys);
        methods.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string[]>()?.FirstOrDefault(key => !methodKeys.Contains(key)) is { } unknown)
            {
                result.AddError($"--methods: unknown method '{unknown}'; known: {string.Join(", ", methodKeys)}");
            }
        });
        OptionChecks.AtLeast(pretrainSteps, 1);
        OptionChecks.AtLeast(fineTuneSteps, 1);

        var command = new Command("demo", "Pretrain a tiny Llama on a synthetic world, fine-tune it on new facts with each method, and compare them.");
        foreach (Option option in new Option[] { output, forcePretrain, pretrainSteps, fineTuneSteps, methods })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            var (device, seed) = cli.Prepare(parse);
            if (device != Device.Cpu)
            {
                throw new UsageException($"--device {device}: the demo runs on the cpu only in this build");
            }
            string outputDirectory = parse.GetRequiredValue(output);
            var chosen = parse.GetValue(methods) is { Length: > 0 } keys ? keys : methodKeys;
            var runner = new DemoRunner(defaults with
            {
                OutputDirectory = outputDirectory,
                Seed = seed,
                Threads = CpuBackend.Instance.Threads,
                ForcePretrain = parse.GetValue(forcePretrain),
                PretrainSteps = parse.GetValue(pretrainSteps),
                FineTuneSteps = parse.GetValue(fineTuneSteps),
                Methods = [.. DemoOptions.DefaultMethods(seed).Where(method => chosen.Contains(method.Key))],
            });
            var report = StepProgress.Run(cli, progress =>
            {
                runner.Message += progress.Message;
                runner.StepCompleted += (phase, metrics, budget) => progress.Report(phase, metrics, budget);
                return runner.Run();
            });
            WritePlots(cli, outputDirectory);
            PrintReport(cli, report, outputDirectory);
            return 0;
        });
        return command;
    }

    /// <summary>loss.png beside the base model's and each run's metrics.csv (where the runner's trainers write them).</summary>
    private static void WritePlots(CliContext cli, string outputDirectory)
    {
        TrainingRun.WritePlot(cli, Path.Combine(outputDirectory, "base-model"), "demo: pretraining the base model");
        string runs = Path.Combine(outputDirectory, "runs");
        if (Directory.Exists(runs))
        {
            foreach (string run in Directory.EnumerateDirectories(runs).Order(StringComparer.Ordinal))
            {
                TrainingRun.WritePlot(cli, run, $"demo: fine-tuning ({Path.GetFileName(run)})");
            }
        }
    }

    private static void PrintReport(CliContext cli, DemoReport report, string outputDirectory)
    {
        var console = cli.OutConsole;
        string Format(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
        console.WriteLine(Format($"Base model: {report.BaseParameters:N0} parameters, pretrained in {report.PretrainSeconds:F0} s{(report.PretrainCached ? " (cached)" : "")}; ")
            + Format($"exact match on pretraining facts {report.PretrainEvalAccuracy:P0}, on the downstream task before fine-tuning {report.BaseAccuracy:P0}."));
        var table = new Table().Border(TableBorder.Rounded);
        table.AddColumn("method");
        foreach (string column in new[] { "trainable params", "stored bytes", "peak memory", "seconds", "tokens/s", "eval loss", "exact match (held-out phrasing)", "exact match (training phrasing)" })
        {
            table.AddColumn(new TableColumn(column).RightAligned());
        }
        foreach (var row in report.Rows)
        {
            table.AddRow(Markup.Escape(row.Method), Format($"{row.TrainableParameters:N0}"), Format($"{row.StoredBytes:N0}"), Format($"{row.PeakMemoryBytes / 1048576.0:F1} MiB"),
                Format($"{row.Seconds:F1}"), Format($"{row.TokensPerSecond:N0}"), Format($"{row.EvalLoss:F3}"), Format($"{row.Accuracy:P1}"), Format($"{row.InDistributionAccuracy:P1}"));
        }
        console.Write(table);
        console.WriteLine(Format($"Whole demo: {report.TotalSeconds:F0} s. Report: {Path.Combine(outputDirectory, "report.md")}; loss curves: loss.png in {Path.Combine(outputDirectory, "base-model")} and each run folder."));
    }
}
