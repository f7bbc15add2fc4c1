using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Model;
using Engine.Training.Data;
using Engine.Training.Evaluation;
using Spectre.Console;

namespace Engine.Cli.Commands;

/// <summary>
/// <c>engine eval</c>: mean next-token cross-entropy of a model over a JSON Lines file. Lines are framed as for
/// training (BOS first and EOS last when the tokenizer has them) and evaluated one per row, so no line sees another.
/// Every labelled position after the first token of a line is predicted from the tokens before it: all of a "text"
/// line (and its EOS), the response and EOS of a prompt/response line, the non -100 labels of a pre-tokenized line.
/// </summary>
internal static class EvalCommand
{
    public static Command Create(CliContext cli)
    {
        var model = new Option<string>("--model") { Description = "The model folder to evaluate.", Required = true, HelpName = "DIR" };
        var adapter = AdapterOption.Create();
        var data = new Option<string>("--data") { Description = "Evaluation data (JSON Lines).", Required = true, HelpName = "FILE" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object ({\"loss\", \"perplexity\", \"tokens\", \"examples\"}) on stdout." };
        var batchSize = new Option<int>("--batch-size") { Description = "Lines per forward pass (does not change the result).", DefaultValueFactory = _ => 8 };
        OptionChecks.AtLeast(batchSize, 1);

        var command = new Command("eval", "Mean next-token cross-entropy of a model over every predicted token of a JSON Lines file.");
        foreach (Option option in new Option[] { model, adapter, data, json, batchSize })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            var (device, _) = cli.Prepare(parse);
            string modelDirectory = ModelFolder.Require(parse.GetRequiredValue(model), "--model");
            var config = LlamaConfig.Load(Path.Combine(modelDirectory, "config.json"));
            var tokenizer = ModelFolder.TryLoadTokenizer(modelDirectory);
            string dataPath = parse.GetRequiredValue(data);
            var examples = DataFiles.Load(cli, dataPath, "--data", tokenizer, DataFiles.EvaluationOptions(config));
            var batches = DatasetBatches.EvaluationBatches(examples, parse.GetValue(batchSize), DataFiles.PadId(tokenizer, config));
            using var llama = AdapterOption.LoadModel(cli, modelDirectory, parse.GetValue(adapter), device);

            var result = ShowProgress(cli, batches.Count, report => TokenLoss.Evaluate(llama, batches, report));
            if (result.Tokens == 0)
            {
                throw new UsageException($"{dataPath}: no line has a token to predict");
            }
            double perplexity = Math.Exp(result.Loss);
            if (parse.GetValue(json))
            {
                var report = new JsonObject
                {
                    ["loss"] = result.Loss,
                    ["perplexity"] = double.IsFinite(perplexity) ? perplexity : null,
                    ["tokens"] = result.Tokens,
                    ["examples"] = examples.Count,
                    ["model"] = modelDirectory,
                    ["adapter"] = parse.GetValue(adapter),
                    ["data"] = dataPath,
                };
                cli.Out.WriteLine(report.ToJsonString());
            }
            else
            {
                cli.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss        {result.Loss:F6}"));
                cli.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"perplexity  {perplexity:F4}"));
                cli.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"tokens      {result.Tokens}"));
                cli.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"examples    {examples.Count}"));
            }
            return 0;
        });
        return command;
    }

    /// <summary>A progress bar over batches on an interactive stderr; nothing otherwise.</summary>
    private static TokenLoss.Result ShowProgress(CliContext cli, int batches, Func<Action<int>?, TokenLoss.Result> evaluate)
    {
        if (!cli.IsInteractive)
        {
            return evaluate(null);
        }
        return cli.ErrorConsole.Progress().AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask("eval", maxValue: batches);
                return evaluate(done => task.Value = done);
            });
    }
}
