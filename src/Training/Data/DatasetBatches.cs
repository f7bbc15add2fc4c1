using Engine.Model.Tokenization;

namespace Engine.Training.Data;

/// <summary>
/// Turns loaded examples into what the trainer and evaluation consume: the batching mode the examples call for, a
/// resumable training stream, and evaluation batches that visit every example exactly once.
/// </summary>
public static class DatasetBatches
{
    /// <summary>
    /// Padding (one example per row) when some example masks labels beyond its first position (prompt/response lines,
    /// or pre-tokenized lines with -100 labels); packing for plain text, where row boundaries do not matter.
    /// </summary>
    public static BatchingMode ModeFor(IReadOnlyList<TrainingExample> examples) =>
        examples.Any(example => example.SupervisedCount < example.Length - 1) ? BatchingMode.Padding : BatchingMode.Packing;

    /// <summary>
    /// The shuffled, endless training stream. Packing separates examples with the tokenizer's EOS (not repeated after
    /// an example that already ends with it); padding pads with its PAD id, or 0.
    /// </summary>
    public static BatcherSource TrainingSource(IReadOnlyList<TrainingExample> examples, ITextTokenizer? tokenizer, BatchingMode mode, int batchSize, int sequenceLength, int seed) =>
        new(new Batcher(examples, new BatcherOptions
        {
            BatchSize = batchSize,
            SequenceLength = sequenceLength,
            Mode = mode,
            PadId = tokenizer?.PadId ?? 0,
            SeparatorId = mode == BatchingMode.Packing ? tokenizer?.EosId : null,
            Seed = seed,
        }));

    /// <summary>
    /// Every example once, in file order, one per row, each batch padded to its longest example. Rows never share
    /// context, so the loss over these batches is the loss of each example on its own.
    /// </summary>
    public static IReadOnlyList<Batch> EvaluationBatches(IReadOnlyList<TrainingExample> examples, int batchSize, int padId)
    {
        var batcher = new Batcher(examples, new BatcherOptions
        {
            BatchSize = batchSize,
            // The batcher's lower bound; each batch is padded only to its own longest example.
            SequenceLength = Math.Max(2, examples.Max(example => example.Length)),
            Mode = BatchingMode.Padding,
            PadId = padId,
            Shuffle = false,
        });
        return Enumerable.Range(0, batcher.BatchesPerEpoch).Select(_ => batcher.Next()).ToList();
    }
}
