using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Engine.Model.Tokenization;

/// <summary>A tokenizer.json "model": turns one pre-tokenized word into ids.</summary>
internal abstract class TokenModel
{
    /// <summary>The model's own vocabulary, token to id (added tokens are kept separately).</summary>
    public abstract IReadOnlyDictionary<string, int> Vocabulary { get; }

    public abstract int? UnknownId { get; }

    /// <summary>A few words for <see cref="ITextTokenizer.Describe"/>, e.g. "byte-level BPE".</summary>
    public abstract string Description { get; }

    public abstract void Encode(string word, List<int> ids);

    public static TokenModel FromJson(TokenizerFile file, bool byteLevel)
    {
        JsonElement model = file.RequireObject(file.Root, "model", "model");
        string type = file.RequireString(model, "type", "model.type");
        return type switch
        {
            "BPE" => BpeModel.FromJson(file, model, byteLevel),
            "WordLevel" => byteLevel
                ? throw file.Unsupported("pre_tokenizer", "a ByteLevel pre-tokenizer with a WordLevel model")
                : WordLevelModel.FromJson(file, model),
            _ => throw file.Unsupported("model.type", $"model type \"{type}\" (supported: BPE, WordLevel)"),
        };
    }

    protected static Dictionary<string, int> ReadVocabulary(TokenizerFile file, JsonElement model)
    {
        JsonElement vocab = file.RequireObject(model, "vocab", "model.vocab");
        var result = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw file.Invalid($"model.vocab[\"{entry.Name}\"]", $"must be a non-negative 32-bit integer id, not {entry.Value}");
            }

            result[entry.Name] = id;
        }

        return result.Count > 0 ? result : throw file.Invalid("model.vocab", "is empty");
    }

    protected static int? ReadUnknownId(TokenizerFile file, JsonElement model, IReadOnlyDictionary<string, int> vocab, string? fallback)
    {
        string? unknown = file.GetString(model, "unk_token", "model.unk_token") ?? fallback;
        if (unknown is null)
        {
            return null;
        }

        return vocab.TryGetValue(unknown, out int id) ? id : throw file.Invalid("model.unk_token", $"names \"{unknown}\", which is not in model.vocab");
    }
}

/// <summary>Hugging Face's WordLevel model: each word is looked up whole. (The library has no word-level model.)</summary>
internal sealed class WordLevelModel(Dictionary<string, int> vocabulary, int unknownId) : TokenModel
{
    public override IReadOnlyDictionary<string, int> Vocabulary => vocabulary;

    public override int? UnknownId => unknownId;

    public override string Description => "WordLevel";

    public static WordLevelModel FromJson(TokenizerFile file, JsonElement model)
    {
        Dictionary<string, int> vocabulary = ReadVocabulary(file, model);
        // Hugging Face defaults unk_token to "<unk>" and fails on unknown words when it is missing from the vocabulary.
        int unknownId = ReadUnknownId(file, model, vocabulary, fallback: "<unk>")!.Value;
        return new WordLevelModel(vocabulary, unknownId);
    }

    public override void Encode(string word, List<int> ids) => ids.Add(vocabulary.TryGetValue(word, out int id) ? id : unknownId);
}

/// <summary>
/// Hugging Face's BPE model on the library's <see cref="BpeTokenizer"/>, which does the merging (by merge rank, as
/// Hugging Face does) and, for byte-level vocabularies, the byte-to-character mapping. Two tokenizer.json options
/// the library lacks are done here: <c>byte_fallback</c> (characters missing from the vocabulary become their UTF-8
/// bytes as &lt;0xXX&gt; tokens, as in Llama 2) and <c>ignore_merges</c> (a word found whole in the vocabulary is
/// one token, as in Llama 3).
/// </summary>
internal sealed class BpeModel : TokenModel
{
    /// <summary>SentencePiece's word-start mark, which tokenizer.json files of that style use for spaces.</summary>
    private const char WordMark = '\u2581';

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocabulary;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _vocabularyBySpan;
    private readonly bool _byteLevel;
    private readonly bool _ignoreMerges;
    private readonly bool _fuseUnknown;
    private readonly int?[]? _byteTokenIds;
    private readonly int? _unknownId;
    private readonly bool _splitBeforeWordMarks;

    private BpeModel(
        BpeTokenizer bpe, Dictionary<string, int> vocabulary, bool byteLevel, bool byteFallback, bool ignoreMerges, bool fuseUnknown, bool subwordAffixes, int? unknownId)
    {
        _bpe = bpe;
        _vocabulary = vocabulary;
        _vocabularyBySpan = vocabulary.GetAlternateLookup<ReadOnlySpan<char>>();
        _byteLevel = byteLevel;
        _ignoreMerges = ignoreMerges;
        _fuseUnknown = fuseUnknown;
        _unknownId = unknownId;
        // Without a pre-tokenizer (Llama 2 style) a whole text is one word, and the library's merge loop takes time
        // quadratic in word length. Cutting before each '▁' that follows another character keeps words short (and
        // cacheable) without changing the result when no vocabulary entry has a '▁' after another character: no merge
        // can then join symbols across the cut. '▁' must itself be known so that no run of unknowns spans a cut, and
        // there must be no subword prefix/suffix, whose placement depends on where words end.
        _splitBeforeWordMarks = !byteLevel && !subwordAffixes
            && vocabulary.ContainsKey(WordMark.ToString()) && !vocabulary.Keys.Any(HasMarkAfterOtherCharacter);
        if (byteFallback)
        {
            _byteTokenIds = new int?[256];
            for (int b = 0; b < 256; b++)
            {
                _byteTokenIds[b] = vocabulary.TryGetValue($"<0x{b:X2}>", out int id) ? id : null;
            }
        }
    }

    public override IReadOnlyDictionary<string, int> Vocabulary => _vocabulary;

    public override int? UnknownId => _unknownId;

    public override string Description => _byteLevel ? "byte-level BPE" : _byteTokenIds is not null ? "BPE with byte fallback" : "BPE";

    public static BpeModel FromJson(TokenizerFile file, JsonElement model, bool byteLevel)
    {
        if (TokenizerFile.Get(model, "dropout") is JsonElement dropout)
        {
            throw file.Unsupported("model.dropout", $"BPE dropout ({dropout})");
        }

        Dictionary<string, int> vocabulary = ReadVocabulary(file, model);
        string? unknown = file.GetString(model, "unk_token", "model.unk_token");
        int? unknownId = ReadUnknownId(file, model, vocabulary, fallback: null);
        // GPT-2's file writes "" for "no prefix/suffix".
        string? prefix = NullIfEmpty(file.GetString(model, "continuing_subword_prefix", "model.continuing_subword_prefix"));
        string? suffix = NullIfEmpty(file.GetString(model, "end_of_word_suffix", "model.end_of_word_suffix"));
        bool fuseUnknown = file.GetBool(model, "fuse_unk", "model.fuse_unk", fallback: false);
        bool byteFallback = file.GetBool(model, "byte_fallback", "model.byte_fallback", fallback: false);
        bool ignoreMerges = file.GetBool(model, "ignore_merges", "model.ignore_merges", fallback: false);
        if (byteFallback && (byteLevel || prefix is not null || suffix is not null))
        {
            throw file.Unsupported("model.byte_fallback", "byte fallback combined with a ByteLevel pre-tokenizer or a subword prefix/suffix");
        }

        var options = new BpeOptions(vocabulary)
        {
            Merges = ReadMerges(file, model),
            UnknownToken = unknown,
            FuseUnknownTokens = fuseUnknown,
            ContinuingSubwordPrefix = prefix,
            EndOfWordSuffix = suffix,
            ByteLevel = byteLevel,
        };

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(options);
        }
        catch (InvalidOperationException e)
        {
            // The library reports merges whose parts or result are missing from the vocabulary this way.
            throw file.Invalid("model.merges", e.Message);
        }

        return new BpeModel(bpe, vocabulary, byteLevel, byteFallback, ignoreMerges, fuseUnknown, prefix is not null || suffix is not null, unknownId);
    }

    private static string? NullIfEmpty(string? text) => string.IsNullOrEmpty(text) ? null : text;

    /// <summary>Reads merges as the library wants them, "left right", from either tokenizer.json spelling.</summary>
    private static List<string> ReadMerges(TokenizerFile file, JsonElement model)
    {
        var merges = new List<string>();
        if (TokenizerFile.Get(model, "merges") is not JsonElement array)
        {
            return merges;
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw file.Invalid("model.merges", $"must be an array, not {array.ValueKind}");
        }

        int index = 0;
        foreach (JsonElement merge in array.EnumerateArray())
        {
            string field = $"model.merges[{index++}]";
            if (merge.ValueKind == JsonValueKind.String)
            {
                string text = merge.GetString()!;
                int space = text.IndexOf(' ');
                if (space <= 0 || space == text.Length - 1 || text.IndexOf(' ', space + 1) >= 0)
                {
                    throw file.Invalid(field, $"must be two tokens separated by one space, not \"{text}\"");
                }

                merges.Add(text);
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                     && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                // Since tokenizers 0.20 merges may be ["left", "right"]; the library only takes "left right".
                string left = merge[0].GetString()!, right = merge[1].GetString()!;
                if (left.Contains(' ') || right.Contains(' '))
                {
                    throw file.Unsupported(field, $"a merge of tokens containing spaces ([\"{left}\", \"{right}\"])");
                }

                merges.Add($"{left} {right}");
            }
            else
            {
                throw file.Invalid(field, $"must be \"left right\" or [\"left\", \"right\"], not {merge}");
            }
        }

        return merges;
    }

    public override void Encode(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocabulary.TryGetValue(_byteLevel ? ByteLevelAlphabet.Encode(word) : word, out int whole))
        {
            ids.Add(whole);
            return;
        }

        int wordStart = ids.Count;
        if (!_splitBeforeWordMarks)
        {
            EncodePart(word, ids, wordStart);
            return;
        }

        int partStart = 0;
        for (int i = 1; i < word.Length; i++)
        {
            if (word[i] == WordMark && word[i - 1] != WordMark)
            {
                EncodePart(word.AsSpan(partStart, i - partStart), ids, wordStart);
                partStart = i;
            }
        }

        EncodePart(word.AsSpan(partStart), ids, wordStart);
    }

    private static bool HasMarkAfterOtherCharacter(string token)
    {
        for (int i = 1; i < token.Length; i++)
        {
            if (token[i] == WordMark && token[i - 1] != WordMark)
            {
                return true;
            }
        }

        return false;
    }

    private void EncodePart(ReadOnlySpan<char> part, List<int> ids, int wordStart)
    {
        if (_byteTokenIds is null)
        {
            EncodeRun(part, ids);
            return;
        }

        // A character missing from the vocabulary takes part in no merge, so the runs between such characters
        // can be merged independently.
        int runStart = 0;
        int i = 0;
        while (i < part.Length)
        {
            int length = i + 1 < part.Length && char.IsSurrogatePair(part[i], part[i + 1]) ? 2 : 1;
            ReadOnlySpan<char> character = part.Slice(i, length);
            if (!_vocabularyBySpan.ContainsKey(character))
            {
                EncodeRun(part[runStart..i], ids);
                AppendBytes(character, ids, wordStart);
                runStart = i + length;
            }

            i += length;
        }

        EncodeRun(part[runStart..], ids);
    }

    private void EncodeRun(ReadOnlySpan<char> run, List<int> ids)
    {
        if (!run.IsEmpty)
        {
            ids.AddRange(_bpe.EncodeToIds(run, considerPreTokenization: false, considerNormalization: false));
        }
    }

    private void AppendBytes(ReadOnlySpan<char> character, List<int> ids, int wordStart)
    {
        Span<byte> bytes = stackalloc byte[4];
        int count = Encoding.UTF8.GetBytes(character, bytes);
        bool allBytesKnown = true;
        for (int k = 0; k < count; k++)
        {
            allBytesKnown &= _byteTokenIds![bytes[k]] is not null;
        }

        if (allBytesKnown)
        {
            for (int k = 0; k < count; k++)
            {
                ids.Add(_byteTokenIds![bytes[k]]!.Value);
            }
        }
        else if (_unknownId is int unknown && !(_fuseUnknown && ids.Count > wordStart && ids[^1] == unknown))
        {
            ids.Add(unknown);
        }
    }
}
