using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Engine.Model.Tokenization;

/// <summary>
/// A tokenizer read from a Hugging Face tokenizer.json: models "BPE" (byte-level as in GPT-2 and Llama 3, or
/// SentencePiece-style with '▁' and byte fallback as in Llama 2 / TinyLlama) and "WordLevel".
/// </summary>
/// <remarks>
/// <para>Encoding follows Hugging Face's pipeline: added tokens are cut out of the raw text, each remaining stretch is
/// normalized, pre-tokenized into words, and each word is encoded by the model. The post-processor is not applied:
/// <see cref="Encode"/> adds no special tokens.</para>
/// <para>Special ids come from tokenizer_config.json next to the file (bos_token, eos_token, pad_token, unk_token)
/// when it sets them; otherwise from the model's unk_token and the usual names among the special added tokens
/// (BOS: &lt;s&gt;, &lt;|begin_of_text|&gt;, &lt;bos&gt;; EOS: &lt;/s&gt;, &lt;|end_of_text|&gt;, &lt;eos&gt;, &lt;|endoftext|&gt;;
/// PAD: &lt;pad&gt;, [PAD], &lt;|pad|&gt;).</para>
/// </remarks>
public sealed class HuggingFaceTokenizer : ITextTokenizer
{
    public const string ConfigFileName = "tokenizer_config.json";

    private static readonly string[] BosNames = ["<s>", "<|begin_of_text|>", "<bos>"];
    private static readonly string[] EosNames = ["</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>"];
    private static readonly string[] PadNames = ["<pad>", "[PAD]", "<|pad|>"];

    private readonly Normalizer? _normalizer;
    private readonly PreTokenization _preTokenization;
    private readonly TokenModel _model;
    private readonly AddedTokenSplitter _addedTokenSplitter;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<int, string> _tokenById;
    private readonly HashSet<int> _omittedWhenDecoding;
    private readonly List<DecodingStep>? _decoder;

    private HuggingFaceTokenizer(TokenizerFile file)
    {
        SourcePath = file.Path;
        JsonElement root = file.Root;
        _normalizer = TextNormalizers.FromJson(file, TokenizerFile.Get(root, "normalizer"), "normalizer");
        _preTokenization = PreTokenization.FromJson(file, TokenizerFile.Get(root, "pre_tokenizer"), "pre_tokenizer");
        _model = TokenModel.FromJson(file, _preTokenization.ByteLevel);
        _decoder = DecodingStep.FromJson(file, TokenizerFile.Get(root, "decoder"), "decoder");

        List<AddedToken> addedTokens = ReadAddedTokens(file);
        _addedTokenSplitter = new AddedTokenSplitter(addedTokens);
        _addedByContent = addedTokens.GroupBy(t => t.Content).ToDictionary(g => g.Key, g => g.Last(), StringComparer.Ordinal);
        _tokenById = new Dictionary<int, string>(_model.Vocabulary.Count + addedTokens.Count);
        foreach ((string token, int id) in _model.Vocabulary)
        {
            _tokenById[id] = token;
        }

        foreach (AddedToken token in addedTokens)
        {
            _tokenById[token.Id] = token.Content;
        }

        VocabularySize = _tokenById.Keys.Max() + 1;
        (BosId, EosId, PadId, UnknownId) = ReadSpecialIds(file, addedTokens);
        _omittedWhenDecoding = addedTokens.Where(t => t.Special).Select(t => t.Id)
            .Concat(new[] { BosId, EosId, PadId }.OfType<int>())
            .Where(id => id != UnknownId)
            .ToHashSet();
    }

    /// <summary>The tokenizer.json this tokenizer was read from.</summary>
    public string SourcePath { get; }

    public int VocabularySize { get; }

    public int? BosId { get; }

    public int? EosId { get; }

    public int? PadId { get; }

    public int? UnknownId { get; }

    /// <summary>Reads a tokenizer.json, given the file or the folder holding it.</summary>
    /// <exception cref="FileNotFoundException">No tokenizer.json there.</exception>
    /// <exception cref="InvalidDataException">The file is malformed; the message names the file and field.</exception>
    /// <exception cref="NotSupportedException">The file uses a feature this reader lacks; the message names the file and field.</exception>
    public static HuggingFaceTokenizer Load(string directoryOrFile)
    {
        using TokenizerFile file = TokenizerFile.Open(TokenizerLoader.ResolveTokenizerJson(directoryOrFile));
        return new HuggingFaceTokenizer(file);
    }

    internal static HuggingFaceTokenizer FromFile(TokenizerFile file) => new(file);

    /// <summary>The id of a vocabulary entry or added token, or null.</summary>
    public int? TokenToId(string token)
        => _addedByContent.TryGetValue(token, out AddedToken? added) ? added.Id
            : _model.Vocabulary.TryGetValue(token, out int id) ? id
            : null;

    /// <summary>The vocabulary entry or added token for an id, or null.</summary>
    public string? IdToToken(int id) => _tokenById.GetValueOrDefault(id);

    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>();
        foreach (TextSegment segment in _addedTokenSplitter.Split(text))
        {
            if (segment.TokenId is int addedId)
            {
                ids.Add(addedId);
                continue;
            }

            string normalized = _normalizer?.Normalize(segment.Text) ?? segment.Text;
            if (normalized.Length == 0)
            {
                continue;
            }

            foreach (string word in _preTokenization.Split(normalized, isTextStart: segment.Start == 0))
            {
                _model.Encode(word, ids);
            }
        }

        return ids;
    }

    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var tokens = new List<string>();
        foreach (int id in ids)
        {
            if (!_tokenById.TryGetValue(id, out string? token))
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Id {id} is not in the vocabulary of {SourcePath}.");
            }

            if (!_omittedWhenDecoding.Contains(id))
            {
                tokens.Add(token);
            }
        }

        // Without a decoder Hugging Face joins tokens with spaces.
        if (_decoder is null)
        {
            return string.Join(' ', tokens);
        }

        foreach (DecodingStep step in _decoder)
        {
            tokens = step.Apply(tokens);
        }

        return string.Concat(tokens);
    }

    public string Describe()
        => $"{_model.Description} tokenizer from {SourcePath}: {VocabularySize} ids, "
           + $"BOS {Show(BosId)}, EOS {Show(EosId)}, PAD {Show(PadId)}, UNK {Show(UnknownId)}";

    private string Show(int? id) => id is int value ? $"{IdToToken(value)}={value}" : "none";

    private static List<AddedToken> ReadAddedTokens(TokenizerFile file)
    {
        var tokens = new List<AddedToken>();
        if (TokenizerFile.Get(file.Root, "added_tokens") is not JsonElement array)
        {
            return tokens;
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw file.Invalid("added_tokens", $"must be an array, not {array.ValueKind}");
        }

        int index = 0;
        foreach (JsonElement entry in array.EnumerateArray())
        {
            string field = $"added_tokens[{index++}]";
            if (entry.ValueKind != JsonValueKind.Object)
            {
                throw file.Invalid(field, $"must be an object, not {entry.ValueKind}");
            }

            int id = file.GetInt(entry, "id", field + ".id", fallback: -1);
            if (id < 0)
            {
                throw file.Invalid(field + ".id", "must be present and non-negative");
            }

            tokens.Add(new AddedToken(
                id,
                file.RequireString(entry, "content", field + ".content"),
                file.GetBool(entry, "special", field + ".special", fallback: false),
                file.GetBool(entry, "single_word", field + ".single_word", fallback: false),
                file.GetBool(entry, "lstrip", field + ".lstrip", fallback: false),
                file.GetBool(entry, "rstrip", field + ".rstrip", fallback: false)));
        }

        return tokens;
    }

    private (int? Bos, int? Eos, int? Pad, int? Unknown) ReadSpecialIds(TokenizerFile file, List<AddedToken> addedTokens)
    {
        string configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(file.Path))!, ConfigFileName);
        using TokenizerFile? config = File.Exists(configPath) ? TokenizerFile.Open(configPath) : null;

        int? Pick(string setting, string[] usualNames, int? fallback)
        {
            // A setting present in tokenizer_config.json wins, even when it is null ("no such token").
            if (config is not null && config.Root.TryGetProperty(setting, out _))
            {
                string? content = config.GetTokenContent(config.Root, setting);
                return content is null ? null
                    : TokenToId(content) ?? throw config.Invalid(setting, $"names \"{content}\", which is neither an added token nor in model.vocab of {file.Path}");
            }

            return fallback ?? addedTokens.Where(t => t.Special && usualNames.Contains(t.Content)).Select(t => (int?)t.Id).FirstOrDefault();
        }

        return (Pick("bos_token", BosNames, null), Pick("eos_token", EosNames, null), Pick("pad_token", PadNames, null), Pick("unk_token", [], _model.UnknownId));
    }
}
