using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Engine.Model.Tokenization;

/// <summary>
/// The built-in demo's tokenizer: lowercased words, with every digit and every other non-space character a token of
/// its own, over a fixed vocabulary of a corpus's most frequent words. Ids 0-3 are &lt;pad&gt;, &lt;s&gt; (BOS),
/// &lt;/s&gt; (EOS) and &lt;unk&gt;.
/// </summary>
/// <remarks>
/// <see cref="Save"/> writes a Hugging Face tokenizer.json (WordLevel model, Lowercase normalizer, Split
/// pre-tokenizer keeping the matches of <see cref="WordPattern"/>) and a tokenizer_config.json naming the special
/// tokens, so the folder also loads with Hugging Face's <c>tokenizers</c>/<c>transformers</c> and with
/// <see cref="HuggingFaceTokenizer"/>, which encodes identically.
/// </remarks>
public sealed class WordTokenizer : ITextTokenizer
{
    public const string PadToken = "<pad>";
    public const string BosToken = "<s>";
    public const string EosToken = "</s>";
    public const string UnknownToken = "<unk>";
    public const int PadTokenId = 0;
    public const int BosTokenId = 1;
    public const int EosTokenId = 2;
    public const int UnknownTokenId = 3;

    /// <summary>A run of letters is a word; each digit and each other non-space character stands alone.</summary>
    public const string WordPattern = @"\p{L}+|\p{N}|[^\s\p{L}\p{N}]";

    private static readonly string[] SpecialTokens = [PadToken, BosToken, EosToken, UnknownToken];
    private static readonly AddedTokenSplitter SpecialTokenSplitter = new(SpecialTokens.Select((token, id) => new AddedToken(id, token, Special: true)));
    private static readonly PreTokenization Words = new([new LibraryStep(new RegexPreTokenizer(new Regex(WordPattern, RegexOptions.CultureInvariant), null))], ByteLevel: false);

    // Decoding: no space before closing punctuation, after opening brackets, or on either side of joiners.
    private static readonly HashSet<string> Closing = [".", ",", "!", "?", ";", ":", ")", "]", "}", "%"];
    private static readonly HashSet<string> Opening = ["(", "[", "{"];
    private static readonly HashSet<string> Joiners = ["'", "-", "/"];

    private readonly string[] _tokens;
    private readonly Dictionary<string, int> _ids;

    private WordTokenizer(string[] tokens)
    {
        _tokens = tokens;
        _ids = tokens.Select((token, id) => (token, id)).ToDictionary(p => p.token, p => p.id, StringComparer.Ordinal);
    }

    /// <summary>The vocabulary in id order, special tokens first.</summary>
    public IReadOnlyList<string> Tokens => _tokens;

    public int VocabularySize => _tokens.Length;

    public int? BosId => BosTokenId;

    public int? EosId => EosTokenId;

    public int? PadId => PadTokenId;

    public int? UnknownId => UnknownTokenId;

    /// <summary>
    /// Builds the vocabulary from <paramref name="corpus"/>: the four special tokens, then the most frequent words
    /// (ties in ordinal order, so the result depends only on the corpus) up to <paramref name="maxVocabulary"/> entries.
    /// </summary>
    /// <param name="corpus">Training texts.</param>
    /// <param name="maxVocabulary">Largest vocabulary size, special tokens included; at least 5.</param>
    /// <param name="minFrequency">Words seen fewer times stay out of the vocabulary (they encode as &lt;unk&gt;).</param>
    public static WordTokenizer Build(IEnumerable<string> corpus, int maxVocabulary, int minFrequency = 1)
    {
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxVocabulary, SpecialTokens.Length + 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(minFrequency, 1);

        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string text in corpus)
        {
            foreach ((string? word, _) in Split(text))
            {
                if (word is not null)
                {
                    counts[word] = counts.GetValueOrDefault(word) + 1;
                }
            }
        }

        IEnumerable<string> words = counts
            .Where(entry => entry.Value >= minFrequency)
            .OrderByDescending(entry => entry.Value)
            .ThenBy(entry => entry.Key, StringComparer.Ordinal)
            .Take(maxVocabulary - SpecialTokens.Length)
            .Select(entry => entry.Key);
        return new WordTokenizer([.. SpecialTokens, .. words]);
    }

    /// <summary>Reads a tokenizer written by <see cref="Save"/>, given the file or its folder.</summary>
    /// <exception cref="InvalidDataException">The file is not one <see cref="Save"/> writes.</exception>
    public static WordTokenizer Load(string directoryOrFile)
    {
        using TokenizerFile file = TokenizerFile.Open(TokenizerLoader.ResolveTokenizerJson(directoryOrFile));
        if (!IsWordTokenizerFile(file))
        {
            throw new InvalidDataException(
                $"{file.Path} was not written by {nameof(WordTokenizer)} (it needs a WordLevel model, a Lowercase normalizer and a Split "
                + $"pre-tokenizer on {WordPattern}); load it with {nameof(HuggingFaceTokenizer)}.");
        }

        return FromFile(file);
    }

    /// <summary>Whether the normalizer, pre-tokenizer and model are the ones <see cref="Save"/> writes.</summary>
    internal static bool IsWordTokenizerFile(TokenizerFile file)
    {
        JsonElement root = file.Root;
        return TokenizerFile.Get(root, "model") is JsonElement { ValueKind: JsonValueKind.Object } model
               && Text(model, "type") == "WordLevel"
               && TokenizerFile.Get(root, "normalizer") is JsonElement { ValueKind: JsonValueKind.Object } normalizer
               && Text(normalizer, "type") == "Lowercase"
               && TokenizerFile.Get(root, "pre_tokenizer") is JsonElement { ValueKind: JsonValueKind.Object } preTokenizer
               && Text(preTokenizer, "type") == "Split"
               && Text(preTokenizer, "behavior") == "Removed"
               && TokenizerFile.Get(preTokenizer, "invert") is JsonElement { ValueKind: JsonValueKind.True }
               && TokenizerFile.Get(preTokenizer, "pattern") is JsonElement { ValueKind: JsonValueKind.Object } pattern
               && Text(pattern, "Regex") == WordPattern;

        static string? Text(JsonElement obj, string name)
            => TokenizerFile.Get(obj, name) is JsonElement { ValueKind: JsonValueKind.String } value ? value.GetString() : null;
    }

    internal static WordTokenizer FromFile(TokenizerFile file)
    {
        JsonElement vocab = file.RequireObject(file.RequireObject(file.Root, "model", "model"), "vocab", "model.vocab");
        var tokens = new string?[vocab.EnumerateObject().Count()];
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (!entry.Value.TryGetInt32(out int id) || id < 0 || id >= tokens.Length || tokens[id] is not null)
            {
                throw file.Invalid($"model.vocab[\"{entry.Name}\"]", $"must be a distinct id in 0..{tokens.Length - 1}, not {entry.Value}");
            }

            tokens[id] = entry.Name;
        }

        for (int id = 0; id < SpecialTokens.Length; id++)
        {
            if (id >= tokens.Length || tokens[id] != SpecialTokens[id])
            {
                throw file.Invalid("model.vocab", $"must map \"{SpecialTokens[id]}\" to {id}");
            }
        }

        return new WordTokenizer(tokens!);
    }

    /// <summary>The id of a vocabulary entry, or null.</summary>
    public int? TokenToId(string token) => _ids.TryGetValue(token, out int id) ? id : null;

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        foreach ((string? word, int? specialId) in Split(text))
        {
            ids.Add(specialId ?? (_ids.TryGetValue(word!, out int id) ? id : UnknownTokenId));
        }

        return ids;
    }

    /// <summary>
    /// Joins words with single spaces, except: digits join up ("1", "2" → "12", and "3", ".", "5" → "3.5"), closing
    /// punctuation attaches to the word before, opening brackets to the word after, and ' - / join both sides.
    /// &lt;pad&gt;, &lt;s&gt; and &lt;/s&gt; are left out; &lt;unk&gt; is written as is.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var words = new List<string>();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_tokens.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Id {id} is outside the vocabulary of {_tokens.Length} tokens.");
            }

            if (id is not (PadTokenId or BosTokenId or EosTokenId))
            {
                words.Add(_tokens[id]);
            }
        }

        var text = new StringBuilder();
        for (int i = 0; i < words.Count; i++)
        {
            if (i > 0 && NeedsSpace(i > 1 ? words[i - 2] : null, words[i - 1], words[i]))
            {
                text.Append(' ');
            }

            text.Append(words[i]);
        }

        return text.ToString();
    }

    /// <summary>Writes tokenizer.json and tokenizer_config.json into <paramref name="directory"/> (created if needed).</summary>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory.CreateDirectory(directory);
        WriteJson(Path.Combine(directory, TokenizerLoader.TokenizerFileName), WriteTokenizerJson);
        WriteJson(Path.Combine(directory, HuggingFaceTokenizer.ConfigFileName), writer =>
        {
            writer.WriteStartObject();
            writer.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            writer.WriteString("bos_token", BosToken);
            writer.WriteString("eos_token", EosToken);
            writer.WriteString("pad_token", PadToken);
            writer.WriteString("unk_token", UnknownToken);
            writer.WriteEndObject();
        });
    }

    public string Describe() => $"word tokenizer: {VocabularySize} ids, BOS {BosToken}={BosTokenId}, EOS {EosToken}={EosTokenId}, PAD {PadToken}={PadTokenId}, UNK {UnknownToken}={UnknownTokenId}";

    /// <summary>Special tokens written in the text (word null), then lowercased words of the text in between.</summary>
    private static IEnumerable<(string? Word, int? SpecialId)> Split(string text)
    {
        foreach (TextSegment segment in SpecialTokenSplitter.Split(text))
        {
            if (segment.TokenId is int id)
            {
                yield return (null, id);
                continue;
            }

            foreach (string word in Words.Split(TextNormalizers.LowercaseNormalizer.Instance.Normalize(segment.Text), isTextStart: false))
            {
                yield return (word, null);
            }
        }
    }

    private static bool NeedsSpace(string? beforePrevious, string previous, string next)
    {
        bool numberContinues = IsDigit(next) && (IsDigit(previous) || (previous is "." or "," && beforePrevious is not null && IsDigit(beforePrevious)));
        return !numberContinues && !Closing.Contains(next) && !Opening.Contains(previous) && !Joiners.Contains(previous) && !Joiners.Contains(next);
    }

    private static bool IsDigit(string word) => word.Length == 1 && char.IsDigit(word[0]);

    private static void WriteJson(string path, Action<Utf8JsonWriter> write)
    {
        using FileStream stream = File.Create(path);
        // Relaxed escaping writes non-ASCII words as UTF-8, as Hugging Face does.
        using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        write(writer);
    }

    private void WriteTokenizerJson(Utf8JsonWriter writer)
    {
        writer.WriteStartObject();
        writer.WriteString("version", "1.0");
        writer.WriteNull("truncation");
        writer.WriteNull("padding");
        writer.WriteStartArray("added_tokens");
        for (int id = 0; id < SpecialTokens.Length; id++)
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", id);
            writer.WriteString("content", SpecialTokens[id]);
            writer.WriteBoolean("single_word", false);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("normalized", false);
            writer.WriteBoolean("special", true);
            writer.WriteEndObject();
        }

        writer.WriteEndArray();
        writer.WriteStartObject("normalizer");
        writer.WriteString("type", "Lowercase");
        writer.WriteEndObject();
        writer.WriteStartObject("pre_tokenizer");
        writer.WriteString("type", "Split");
        writer.WriteStartObject("pattern");
        writer.WriteString("Regex", WordPattern);
        writer.WriteEndObject();
        writer.WriteString("behavior", "Removed");
        writer.WriteBoolean("invert", true);
        writer.WriteEndObject();
        writer.WriteNull("post_processor");
        writer.WriteNull("decoder");
        writer.WriteStartObject("model");
        writer.WriteString("type", "WordLevel");
        writer.WriteStartObject("vocab");
        for (int id = 0; id < _tokens.Length; id++)
        {
            writer.WriteNumber(_tokens[id], id);
        }

        writer.WriteEndObject();
        writer.WriteString("unk_token", UnknownToken);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}
