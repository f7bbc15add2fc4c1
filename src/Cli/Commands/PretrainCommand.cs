using System.CommandLine;
using Engine.Model;
using Engine.Model.Tokenization;
using Engine.Training;
using Engine.Training.Data;

namespace Engine.Cli.Commands;

/// <summary><c>engine pretrain</c>: a randomly initialised Llama trained on packed text, saved as a Hugging Face folder.</summary>
internal static class PretrainCommand
{
    public static Command Create(CliContext cli)
    {
        var config = new Option<string?>("--config") { Description = "A Hugging Face config.json for the architecture (the architecture flags override its fields).", HelpName = "FILE" };
        var hidden = new Option<int?>("--hidden") { Description = "hidden_size (default 128)." };
        var layers = new Option<int?>("--layers") { Description = "num_hidden_layers (default 4)." };
        var heads = new Option<int?>("--heads") { Description = "num_attention_heads (default 4)." };
        var keyValueHeads = new Option<int?>("--kv-heads") { Description = "num_key_value_heads (default: --heads)." };
        var intermediate = new Option<int?>("--intermediate") { Description = "intermediate_size of the MLP (default: 8/3 x hidden, rounded up to a multiple of 32)." };
        var maxPositions = new Option<int?>("--max-positions") { Description = "max_position_embeddings (default 2048)." };
        var tieEmbeddings = new Option<bool?>("--tie-embeddings") { Description = "Share the embedding with the LM head (default false)." };
        var tokenizer = new Option<string>("--tokenizer") { Description = "Tokenizer folder (or tokenizer.json); copied into --out.", Required = true, HelpName = "DIR" };
        var flags = new TrainingFlags(defaultLearningRate: 3e-3);
        foreach (var option in new[] { hidden, layers, heads, keyValueHeads, intermediate, maxPositions })
        {
            OptionChecks.AtLeast(option, 1);
        }

        var command = new Command("pretrain", "Train a randomly initialised Llama on text (examples packed into rows) and save it as a Hugging Face model folder.");
        command.Options.Add(config);
        foreach (Option option in new Option[] { hidden, layers, heads, keyValueHeads, intermediate, maxPositions, tieEmbeddings, tokenizer })
        {
            command.Options.Add(option);
        }
        flags.AddTo(command);

        command.SetAction(parse =>
        {
            var (device, seed) = cli.Prepare(parse);
            string tokenizerPath = parse.GetRequiredValue(tokenizer);
            var textTokenizer = TokenizerLoader.Load(tokenizerPath);
            var architecture = new Architecture(parse.GetValue(hidden), parse.GetValue(layers), parse.GetValue(heads), parse.GetValue(keyValueHeads),
                parse.GetValue(intermediate), parse.GetValue(maxPositions), parse.GetValue(tieEmbeddings));
            var modelConfig = BuildConfig(parse.GetValue(config), architecture, textTokenizer);
            var options = flags.ToTrainingOptions(parse, seed);
            int batchSize = parse.GetValue(flags.BatchSize), sequenceLength = parse.GetValue(flags.SequenceLength);
            DataFiles.RequireSequenceFits(sequenceLength, modelConfig);

            var data = DataFiles.Load(cli, parse.GetRequiredValue(flags.Data), "--data", textTokenizer, new DataOptions { VocabularySize = modelConfig.VocabSize });
            var evalBatches = DataFiles.LoadEvaluation(cli, parse.GetValue(flags.EvalData), textTokenizer, modelConfig, batchSize);
            using var model = LlamaModel.CreateRandom(modelConfig, (ulong)seed, device);
            cli.Note($"pretraining a {modelConfig.NumHiddenLayers}-layer Llama ({model.ParameterCount:N0} parameters, vocabulary {modelConfig.VocabSize}) "
                + $"on {data.Sum(example => (long)example.Length):N0} tokens in {data.Count:N0} examples (packed), {options.MaxSteps} steps, device {device}");
            var batches = DatasetBatches.TrainingSource(data, textTokenizer, BatchingMode.Packing, batchSize, sequenceLength, seed);
            return TrainingRun.Execute(cli, new TrainingJob("pretrain", model, new FullFineTuning(), batches, options, evalBatches, parse.GetValue(flags.Resume), tokenizerPath));
        });
        return command;
    }

    private sealed record Architecture(int? Hidden, int? Layers, int? Heads, int? KeyValueHeads, int? Intermediate, int? MaxPositions, bool? TieEmbeddings);

    /// <summary>
    /// The config file's fields, or defaults, overridden by the flags given; vocabulary size and special ids come from the
    /// tokenizer unless the file sets them (a larger vocab_size is allowed: spare embedding rows).
    /// </summary>
    private static LlamaConfig BuildConfig(string? configPath, Architecture flags, ITextTokenizer tokenizer)
    {
        string source = configPath ?? "command line";
        LlamaConfig baseConfig;
        if (configPath is null)
        {
            int hidden = flags.Hidden ?? 128;
            baseConfig = new LlamaConfig
            {
                VocabSize = tokenizer.VocabularySize, HiddenSize = hidden, IntermediateSize = (hidden * 8 / 3 + 31) / 32 * 32, NumHiddenLayers = 4, NumAttentionHeads = 4,
            };
        }
        else
        {
            baseConfig = LlamaConfig.Load(ModelFolder.RequireFile(configPath, "--config"));
            if (baseConfig.VocabSize < tokenizer.VocabularySize)
            {
                throw new UsageException($"{configPath}: field 'vocab_size' ({baseConfig.VocabSize}) is smaller than the tokenizer's vocabulary ({tokenizer.VocabularySize})");
            }
        }
        int heads = flags.Heads ?? baseConfig.NumAttentionHeads;
        var config = baseConfig with
        {
            HiddenSize = flags.Hidden ?? baseConfig.HiddenSize,
            IntermediateSize = flags.Intermediate ?? baseConfig.IntermediateSize,
            NumHiddenLayers = flags.Layers ?? baseConfig.NumHiddenLayers,
            NumAttentionHeads = heads,
            // Changing --heads without --kv-heads keeps plain multi-head attention rather than an unrelated file's grouping.
            NumKeyValueHeads = flags.KeyValueHeads ?? (flags.Heads is null ? baseConfig.NumKeyValueHeads : heads),
            MaxPositionEmbeddings = flags.MaxPositions ?? baseConfig.MaxPositionEmbeddings,
            TieWordEmbeddings = flags.TieEmbeddings ?? baseConfig.TieWordEmbeddings,
            BosTokenId = baseConfig.BosTokenId ?? tokenizer.BosId,
            EosTokenId = baseConfig.EosTokenId ?? tokenizer.EosId,
            PadTokenId = baseConfig.PadTokenId ?? tokenizer.PadId,
        };
        return config.Validate(source);
    }
}
