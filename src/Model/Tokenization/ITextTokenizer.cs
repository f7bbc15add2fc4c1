namespace Engine.Model.Tokenization;

/// <summary>
/// Turns text into token ids and back. <see cref="Encode"/> never adds BOS/EOS: framing an example is the data
/// loader's decision, made with <see cref="BosId"/> and <see cref="EosId"/>.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>One more than the largest id the tokenizer can produce: the embedding table needs at least this many rows.</summary>
    int VocabularySize { get; }

    /// <summary>Beginning-of-sequence id, or null when the tokenizer has none.</summary>
    int? BosId { get; }

    /// <summary>End-of-sequence id, or null when the tokenizer has none.</summary>
    int? EosId { get; }

    /// <summary>Padding id, or null when the tokenizer has none (batchers then pad with 0; padded positions carry no loss).</summary>
    int? PadId { get; }

    /// <summary>The id text outside the vocabulary maps to, or null when there is none.</summary>
    int? UnknownId { get; }

    /// <summary>Encodes <paramref name="text"/> without adding special tokens (special tokens written in the text are recognized).</summary>
    IReadOnlyList<int> Encode(string text);

    /// <summary>Decodes ids to text, leaving out BOS, EOS, padding and other control tokens.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    string Decode(IEnumerable<int> ids);

    /// <summary>One line for logs: kind, source, vocabulary size and special ids.</summary>
    string Describe();
}
