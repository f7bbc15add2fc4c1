using Engine.Model;
using Engine.Model.Tokenization;
using Engine.Training.Data;

namespace Engine.Cli;

/// <summary>
/// Loading JSON Lines for the commands. Every command frames lines the same way (JsonlDataset's defaults: BOS first
/// and EOS last when the tokenizer has them), so pretrain, train's eval_loss and engine eval measure the same thing.
/// </summary>
internal static class DataFiles
{
    /// <exception cref="UsageException">The file is missing or yields no example.</exception>
    public static JsonlDataset Load(CliContext cli, string path, string flag, ITextTokenizer? tokenizer, DataOptions options)
    {
        var data = JsonlDataset.Load(ModelFolder.RequireFile(path, flag), tokenizer, options);
        if (data.Count == 0)
        {
            throw new UsageException($"{path}: no examples" + (data.DroppedCount > 0 ? $" ({data.DroppedCount} dropped: longer than {options.MaxLength} tokens with nothing left to predict)" : " (the file is empty)"));
        }
        if (data.TruncatedCount > 0)
        {
            cli.Note($"{path}: {data.TruncatedCount} examples truncated to {options.MaxLength} tokens");
        }
        if (data.DroppedCount > 0)
        {
            cli.Note($"{path}: {data.DroppedCount} examples dropped (nothing to predict within {options.MaxLength} tokens)");
        }
        return data;
    }

    /// <summary>Evaluation framing: one example per row, cut at the model's context length.</summary>
    public static DataOptions EvaluationOptions(LlamaConfig config) => new() { VocabularySize = config.VocabSize, MaxLength = config.MaxPositionEmbeddings };

    /// <summary>Batches of --eval-data, or none when it was not given.</summary>
    public static IReadOnlyList<Batch> LoadEvaluation(CliContext cli, string? path, ITextTokenizer? tokenizer, LlamaConfig config, int batchSize) =>
        path is null ? [] : DatasetBatches.EvaluationBatches(Load(cli, path, "--eval-data", tokenizer, EvaluationOptions(config)), batchSize, PadId(tokenizer, config));

    public static int PadId(ITextTokenizer? tokenizer, LlamaConfig config) => tokenizer?.PadId ?? config.PadTokenId ?? 0;

    public static void RequireSequenceFits(int sequenceLength, LlamaConfig config)
    {
        if (sequenceLength > config.MaxPositionEmbeddings)
        {
            throw new UsageException($"--seq-len {sequenceLength} exceeds the model's max_position_embeddings ({config.MaxPositionEmbeddings})");
        }
    }
}
