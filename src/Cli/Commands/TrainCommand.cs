using System.CommandLine;
using Engine.Model;
using Engine.Training;
using Engine.Training.Data;
using Engine.Training.Ist;

namespace Engine.Cli.Commands;

/// <summary><c>engine train</c>: fine-tunes a Hugging Face model folder with the chosen method.</summary>
internal static class TrainCommand
{
    public static Command Create(CliContext cli)
    {
        var model = new Option<string>("--model") { Description = "The model folder to fine-tune (config.json, safetensors, tokenizer.json).", Required = true, HelpName = "DIR" };
        var methods = new TrainingMethods();
        var packing = new Option<bool>("--packing") { Description = "Pack examples into rows even when they mask prompts (default: prompt/response data is padded, one example per row)." };
        var flags = new TrainingFlags(defaultLearningRate: 1e-4);

        var command = new Command("train", "Fine-tune a model on JSON Lines data; writes the result, metrics.csv, loss.png and a resumable checkpoint/ to --out.");
        command.Options.Add(model);
        methods.AddTo(command);
        command.Options.Add(packing);
        flags.AddTo(command);

        command.SetAction(parse =>
        {
            var (device, seed) = cli.Prepare(parse);
            string modelDirectory = ModelFolder.Require(parse.GetRequiredValue(model), "--model");
            if (parse.GetRequiredValue(methods.Method) == "vblora")
            {
                // VB-LoRA's groups carry their own rates and no weight decay (its paper's setting).
                if (parse.GetResult(flags.LearningRate) is { Implicit: false })
                {
                    throw new UsageException("--lr does not apply to --method vblora: its bank and logits train at --bank-lr and --logits-lr");
                }
                if (parse.GetResult(flags.WeightDecay) is { Implicit: false })
                {
                    throw new UsageException("--weight-decay does not apply to --method vblora: the bank and logits train without weight decay, as in its paper");
                }
            }
            var trainingMethod = methods.Create(parse, seed, modelDirectory);
            var config = LlamaConfig.Load(Path.Combine(modelDirectory, "config.json"));
            var tokenizer = ModelFolder.TryLoadTokenizer(modelDirectory);
            var options = flags.ToTrainingOptions(parse, seed);
            int batchSize = parse.GetValue(flags.BatchSize), sequenceLength = parse.GetValue(flags.SequenceLength);
            DataFiles.RequireSequenceFits(sequenceLength, config);

            string dataPath = parse.GetRequiredValue(flags.Data);
            var dataOptions = new DataOptions { VocabularySize = config.VocabSize };
            var data = DataFiles.Load(cli, dataPath, "--data", tokenizer, dataOptions);
            var mode = parse.GetValue(packing) ? BatchingMode.Packing : DatasetBatches.ModeFor(data);
            if (mode == BatchingMode.Padding && data.Any(example => example.Length > sequenceLength))
            {
                // A padded row holds one whole example, so longer ones are cut to --seq-len.
                data = DataFiles.Load(cli, dataPath, "--data", tokenizer, dataOptions with { MaxLength = sequenceLength });
            }
            var evalBatches = DataFiles.LoadEvaluation(cli, parse.GetValue(flags.EvalData), tokenizer, config, batchSize);
            if (methods.IstSettings(parse, seed) is { } ist)
            {
                // The reward batch: the first training examples, one padded row each (scored without gradients).
                var rewardBatches = DatasetBatches.EvaluationBatches([.. data.Take(ist.RewardBatchSize)], batchSize, DataFiles.PadId(tokenizer, config));
                trainingMethod = new IstTraining((AdapterTraining)trainingMethod, ist, rewardBatches);
            }

            using var llama = LlamaModel.Load(modelDirectory, device);
            cli.Note($"fine-tuning {modelDirectory} ({llama.ParameterCount:N0} parameters) with method {trainingMethod.Name} on {data.Count:N0} examples "
                + $"({(mode == BatchingMode.Padding ? "padded, one per row" : "packed")}), {options.MaxSteps} steps, device {device}");
            var batches = DatasetBatches.TrainingSource(data, tokenizer, mode, batchSize, sequenceLength, seed);
            return TrainingRun.Execute(cli, new TrainingJob("train", llama, trainingMethod, batches, options, evalBatches, parse.GetValue(flags.Resume),
                tokenizer is null ? null : modelDirectory));
        });
        return command;
    }
}
