using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Model.Tokenization;

namespace Engine.Tests.Tokenization;

/// <summary>
/// Small tokenizer.json files written here, with expected ids derived by hand (no Hugging Face `tokenizers` is
/// installed to cross-check against). BPE applies the lowest-ranked (earliest) merge present in the word first,
/// repeatedly, as Hugging Face does.
/// </summary>
public sealed class HuggingFaceTokenizerTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("hf-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    // GPT-2 style: the ByteLevel pre-tokenizer splits with GPT-2's regex and spells bytes as characters
    // (space = 'Ġ'; 'é' = UTF-8 C3 A9 = "Ã©").
    private static JsonObject ByteLevelBpe() => new()
    {
        ["version"] = "1.0",
        ["added_tokens"] = new JsonArray(AddedToken(0, "<|endoftext|>")),
        ["normalizer"] = null,
        ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
        ["post_processor"] = null,
        ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
        ["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = null,
            ["continuing_subword_prefix"] = "",
            ["end_of_word_suffix"] = "",
            ["fuse_unk"] = false,
            ["byte_fallback"] = false,
            ["vocab"] = Vocabulary(["<|endoftext|>", "h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "Ġw", "or", "Ġwor", "Ã", "©"]),
            ["merges"] = new JsonArray("h e", "l l", "he ll", "Ġ w", "o r", "Ġw or"),
        },
    };

    [Fact]
    public void ByteLevelBpe_EncodesWithMergesInRankOrder()
    {
        var tokenizer = Load(ByteLevelBpe());

        // "hello" → h e l l o → (h e) he l l o → (l l) he ll o → (he ll) hell o; no "hell o" merge.
        // " world" → Ġ w o r l d → (Ġ w) Ġw o r l d → (o r) Ġw or l d → (Ġw or) Ġwor l d.
        Assert.Equal([11, 4, 14, 3, 8], tokenizer.Encode("hello world"));
        // "é" is two bytes, each spelled by one character of the table.
        Assert.Equal([11, 4, 5, 15, 16], tokenizer.Encode("hello é"));
        Assert.Equal([11, 4, 0, 14, 3, 8], tokenizer.Encode("hello<|endoftext|> world"));
    }

    [Fact]
    public void ByteLevelBpe_DecodesBytesAndTakesEosFromTheUsualName()
    {
        var tokenizer = Load(ByteLevelBpe());

        Assert.Equal("hello é", tokenizer.Decode([11, 4, 5, 15, 16]));
        Assert.Equal("hello world", tokenizer.Decode([11, 4, 14, 3, 8, 0]));
        Assert.Equal(0, tokenizer.EosId);
        Assert.Null(tokenizer.BosId);
        Assert.Equal(17, tokenizer.VocabularySize);
        Assert.Contains("byte-level BPE", tokenizer.Describe());
    }

    [Fact]
    public void ByteLevelBpe_AcceptsMergesWrittenAsPairs()
    {
        JsonObject json = ByteLevelBpe();
        json["model"]!["merges"] = new JsonArray(new JsonArray("h", "e"), new JsonArray("l", "l"), new JsonArray("he", "ll"));

        Assert.Equal([11, 4], Load(json).Encode("hello"));
    }

    // Llama 2 / TinyLlama style: '▁' marks spaces (Prepend + Replace normalizers), no pre-tokenizer, 256 byte
    // tokens <0x00>..<0xFF> at ids 3..258 for characters outside the vocabulary.
    private static JsonObject LlamaBpe()
    {
        string[] pieces = ["▁", "H", "e", "l", "o", "w", "r", "d", "ll", "▁w", "or", "He", "Hell", "Hello", "▁Hello", "▁wor", "▁worl", "▁world"];
        string[] bytes = Enumerable.Range(0, 256).Select(b => $"<0x{b:X2}>").ToArray();
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(AddedToken(0, "<unk>"), AddedToken(1, "<s>"), AddedToken(2, "</s>")),
            ["normalizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Prepend", ["prepend"] = "▁" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "▁" }),
            },
            ["pre_tokenizer"] = null,
            ["post_processor"] = null,
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "▁" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = "<unk>",
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true,
                ["byte_fallback"] = true,
                // Ids: <unk> 0, <s> 1, </s> 2, bytes 3..258, then "▁" 259, "H" 260, ... "▁Hello" 273, "▁wor" 274, "▁worl" 275, "▁world" 276.
                ["vocab"] = Vocabulary(["<unk>", "<s>", "</s>", .. bytes, .. pieces]),
                ["merges"] = new JsonArray("l l", "▁ w", "o r", "H e", "He ll", "Hell o", "▁ Hello", "▁w or", "▁wor l", "▁worl d"),
            },
        };
    }

    [Fact]
    public void LlamaBpe_EncodesHelloWorld()
    {
        var tokenizer = Load(LlamaBpe());

        // "Hello world" normalizes to "▁Hello▁world": ▁ H e l l o ▁ w o r l d
        //   (l l) → ▁ H e ll o ▁ w o r l d      (▁ w) → ▁ H e ll o ▁w o r l d     (o r) → ▁ H e ll o ▁w or l d
        //   (H e) → ▁ He ll o ▁w or l d         (He ll) → ▁ Hell o ▁w or l d      (Hell o) → ▁ Hello ▁w or l d
        //   (▁ Hello) → ▁Hello ▁w or l d        (▁w or) → ▁Hello ▁wor l d         (▁wor l), (▁worl d) → ▁Hello ▁world
        Assert.Equal([273, 276], tokenizer.Encode("Hello world"));
        // A leading space becomes a second '▁', which no merge joins to the first.
        Assert.Equal([259, 276], tokenizer.Encode(" world"));
        // The Prepend normalizer applies to the text after an added token too (Llama 2's "legacy" behaviour).
        Assert.Equal([1, 273, 276, 2], tokenizer.Encode("<s>Hello world</s>"));
    }

    [Fact]
    public void LlamaBpe_FallsBackToUtf8BytesForUnknownCharacters()
    {
        var tokenizer = Load(LlamaBpe());

        // 'ö' (U+00F6) is not in the vocabulary: UTF-8 C3 B6 → <0xC3> = 3 + 0xC3 = 198, <0xB6> = 3 + 0xB6 = 185.
        // The runs around it merge on their own: "▁Hello▁w" → ▁Hello ▁w; "rld" → r l d.
        int[] expected = [273, 268, 198, 185, 265, 262, 266];

        Assert.Equal(expected, tokenizer.Encode("Hello wörld"));
        Assert.Equal("Hello wörld", tokenizer.Decode(expected));
        Assert.Equal("Hello world", tokenizer.Decode([1, 273, 276, 2]));
    }

    [Fact]
    public void LlamaBpe_TakesSpecialIdsFromAddedTokensAndTokenizerConfig()
    {
        var tokenizer = Load(LlamaBpe());
        Assert.Equal((1, 2, (int?)null, 0), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId, tokenizer.UnknownId));
        Assert.Equal(277, tokenizer.VocabularySize);

        File.WriteAllText(Path.Combine(_directory, "tokenizer_config.json"),
            """{"bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"}""");
        var configured = HuggingFaceTokenizer.Load(_directory);
        Assert.Equal((1, 2, (int?)2, 0), (configured.BosId, configured.EosId, configured.PadId, configured.UnknownId));
    }

    [Fact]
    public void LlamaBpe_MetaspacePreTokenizerEncodesAsThePrependNormalizerDoes()
    {
        // Files from tokenizers >= 0.19 express the same convention with a Metaspace pre-tokenizer and decoder.
        JsonObject json = LlamaBpe();
        json["normalizer"] = null;
        json["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false };
        json["decoder"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "▁", ["prepend_scheme"] = "first", ["split"] = false };
        var tokenizer = Load(json);

        Assert.Equal([273, 276], tokenizer.Encode("Hello world"));
        // "first": only the text at the very start gets the '▁' prefix, not the text after <s>.
        Assert.Equal([1, 272, 276], tokenizer.Encode("<s>Hello world"));
        Assert.Equal("Hello world", tokenizer.Decode([273, 276]));
    }

    [Fact]
    public void WordLevel_WithWhitespacePreTokenizerAndUnknownToken()
    {
        var json = new JsonObject
        {
            ["added_tokens"] = new JsonArray(AddedToken(0, "[UNK]"), AddedToken(1, "[PAD]")),
            ["normalizer"] = new JsonObject { ["type"] = "Lowercase" },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" },
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = Vocabulary(["[UNK]", "[PAD]", "hello", "world", "!"]), ["unk_token"] = "[UNK]" },
        };
        var tokenizer = Load(json);

        Assert.Equal([2, 3, 4, 0], tokenizer.Encode("Hello WORLD! again"));
        Assert.Equal((1, (int?)0), (tokenizer.PadId, tokenizer.UnknownId));
        Assert.Equal("hello world ! [UNK]", tokenizer.Decode([2, 3, 4, 0, 1]));
    }

    [Fact]
    public void UnsupportedModelType_NamesFileAndField()
    {
        JsonObject json = LlamaBpe();
        json["model"]!["type"] = "Unigram";

        var error = Assert.Throws<NotSupportedException>(() => Load(json));

        Assert.Contains(Path.Combine(_directory, "tokenizer.json"), error.Message);
        Assert.Contains("model.type", error.Message);
        Assert.Contains("Unigram", error.Message);
    }

    [Fact]
    public void UnsupportedPreTokenizer_NamesTheNestedField()
    {
        JsonObject json = ByteLevelBpe();
        json["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(new JsonObject { ["type"] = "Digits" }, new JsonObject { ["type"] = "BertPreTokenizer" }),
        };

        var error = Assert.Throws<NotSupportedException>(() => Load(json));

        Assert.Contains("pre_tokenizer.pretokenizers[1].type", error.Message);
    }

    [Fact]
    public void UnicodeNormalizer_WorksOnlyWhereTheRuntimeCanNormalize()
    {
        JsonObject json = LlamaBpe();
        json["normalizer"] = new JsonObject { ["type"] = "NFKC" };
        bool runtimeNormalizes = "e\u0301".Normalize(System.Text.NormalizationForm.FormC) == "\u00e9";

        if (runtimeNormalizes)
        {
            // NFKC turns the full-width letters into "He" before the model sees them.
            Assert.Equal([270], Load(json).Encode("\uFF28\uFF45"));
        }
        else
        {
            // This repository builds with InvariantGlobalization, where string.Normalize does nothing.
            var error = Assert.Throws<NotSupportedException>(() => Load(json));
            Assert.Contains("normalizer.type", error.Message);
        }
    }

    [Fact]
    public void MergeOfUnknownToken_IsInvalidData()
    {
        JsonObject json = ByteLevelBpe();
        json["model"]!["merges"] = new JsonArray("h e", "x y");

        var error = Assert.Throws<InvalidDataException>(() => Load(json));

        Assert.Contains("model.merges", error.Message);
    }

    [Fact]
    public void MissingModelAndBadJson_AreInvalidData()
    {
        string path = Path.Combine(_directory, "tokenizer.json");
        File.WriteAllText(path, """{"version": "1.0"}""");
        Assert.Contains("'model' is missing", Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.Load(path)).Message);

        File.WriteAllText(path, """{"model": """);
        Assert.Contains(path, Assert.Throws<InvalidDataException>(() => HuggingFaceTokenizer.Load(path)).Message);

        Assert.Throws<FileNotFoundException>(() => TokenizerLoader.Load(Path.Combine(_directory, "missing")));
    }

    private HuggingFaceTokenizer Load(JsonObject json)
    {
        File.WriteAllText(Path.Combine(_directory, "tokenizer.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return HuggingFaceTokenizer.Load(_directory);
    }

    private static JsonObject AddedToken(int id, string content) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = false,
        ["special"] = true,
    };

    private static JsonObject Vocabulary(IEnumerable<string> tokens)
    {
        var vocab = new JsonObject();
        int id = 0;
        foreach (string token in tokens)
        {
            vocab[token] = id++;
        }

        return vocab;
    }
}
