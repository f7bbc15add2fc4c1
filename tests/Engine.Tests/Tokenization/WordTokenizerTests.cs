using System.Text.Json;
using Engine.Model.Tokenization;

namespace Engine.Tests.Tokenization;

public sealed class WordTokenizerTests : IDisposable
{
    private static readonly string[] Corpus = ["The cat sat on the mat.", "The dog sat, 42 times!"];

    private readonly string _directory = Directory.CreateTempSubdirectory("word-tokenizer-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Build_OrdersWordsByFrequencyThenOrdinally_AfterTheSpecialTokens()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 100);

        // "the" is seen 3 times and "sat" twice; the rest once each, so they follow in ordinal order
        // (punctuation and digits sort before letters).
        Assert.Equal(
            ["<pad>", "<s>", "</s>", "<unk>", "the", "sat", "!", ",", ".", "2", "4", "cat", "dog", "mat", "on", "times"],
            tokenizer.Tokens);
        Assert.Equal((1, 2, 0, 3), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId, tokenizer.UnknownId));
        Assert.Equal(16, tokenizer.VocabularySize);
    }

    [Fact]
    public void Build_KeepsOnlyTheMostFrequentWords()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 6);

        Assert.Equal(["<pad>", "<s>", "</s>", "<unk>", "the", "sat"], tokenizer.Tokens);
        Assert.Equal([4, 3, 5, 3, 4, 3, 3], tokenizer.Encode("The cat sat on the mat."));
    }

    [Fact]
    public void Encode_LowercasesAndSplitsDigitsAndPunctuation()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 100);

        Assert.Equal([4, 11, 5, 14, 4, 13, 8], tokenizer.Encode("The CAT sat on the mat."));
        Assert.Equal([12, 5, 7, 10, 9, 15, 6], tokenizer.Encode("dog sat,42 times!"));
        Assert.Equal([4, 3], tokenizer.Encode("the bird"));
        Assert.Equal([1, 11, 2], tokenizer.Encode("<s>cat</s>"));
        Assert.Empty(tokenizer.Encode("  "));
    }

    [Fact]
    public void Encode_SplitsLikeHuggingFaceOnEmojiAndDottedCapitalI()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 100);

        // Hugging Face's regex sees one code point per emoji, and lowercases 'İ' to "i" + U+0307 (a mark, so not
        // part of the letter run): checked against the `tokenizers` npm package 0.23.2.
        Assert.Equal([11, 3, 3, 12], tokenizer.Encode("cat🤗🚀dog"));
        Assert.Equal([3, 3, 3], tokenizer.Encode("İS"));
    }

    [Fact]
    public void Decode_JoinsDigitsAndAttachesPunctuation()
    {
        var tokenizer = WordTokenizer.Build(["It costs 3.50 (about) - that's well-known, isn't it?"], maxVocabulary: 100);

        int[] ids = [WordTokenizer.BosTokenId, .. tokenizer.Encode("It costs 3.50 (about) - that's well-known, isn't it?"), WordTokenizer.EosTokenId];

        Assert.Equal("it costs 3.50 (about)-that's well-known, isn't it?", tokenizer.Decode(ids));
        Assert.Equal("it <unk>", tokenizer.Decode(tokenizer.Encode("it rains")));
        Assert.Throws<ArgumentOutOfRangeException>(() => tokenizer.Decode([tokenizer.VocabularySize]));
    }

    [Fact]
    public void Save_ThenHuggingFaceTokenizer_EncodesIdentically()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 100);
        tokenizer.Save(_directory);

        var loaded = HuggingFaceTokenizer.Load(_directory);

        string[] texts = ["The cat sat on the mat.", "dog sat,42 times!", "<s>THE bird</s>", "  ünïcode «quotes» 7 ", ""];
        foreach (string text in texts)
        {
            Assert.Equal(tokenizer.Encode(text), loaded.Encode(text));
        }

        Assert.Equal(tokenizer.VocabularySize, loaded.VocabularySize);
        Assert.Equal((1, 2, 0, 3), (loaded.BosId, loaded.EosId, loaded.PadId, loaded.UnknownId));
        // tokenizer.json has no decoder, so Hugging Face (and this reader) joins tokens with spaces.
        Assert.Equal("the cat sat .", loaded.Decode([1, 4, 11, 5, 8, 2]));
    }

    [Fact]
    public void Save_WritesAHuggingFaceWordLevelFileWithConfig()
    {
        WordTokenizer.Build(Corpus, maxVocabulary: 100).Save(_directory);

        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(Path.Combine(_directory, "tokenizer.json")));
        JsonElement root = json.RootElement;
        Assert.Equal("WordLevel", root.GetProperty("model").GetProperty("type").GetString());
        Assert.Equal("<unk>", root.GetProperty("model").GetProperty("unk_token").GetString());
        Assert.Equal(4, root.GetProperty("model").GetProperty("vocab").GetProperty("the").GetInt32());
        Assert.Equal("Lowercase", root.GetProperty("normalizer").GetProperty("type").GetString());
        Assert.Equal("Split", root.GetProperty("pre_tokenizer").GetProperty("type").GetString());
        Assert.Equal(4, root.GetProperty("added_tokens").GetArrayLength());

        using JsonDocument config = JsonDocument.Parse(File.ReadAllText(Path.Combine(_directory, "tokenizer_config.json")));
        Assert.Equal("<s>", config.RootElement.GetProperty("bos_token").GetString());
        Assert.Equal("</s>", config.RootElement.GetProperty("eos_token").GetString());
    }

    [Fact]
    public void Load_RoundTripsAndTokenizerLoaderPicksWordTokenizer()
    {
        var tokenizer = WordTokenizer.Build(Corpus, maxVocabulary: 100);
        tokenizer.Save(_directory);

        var reloaded = WordTokenizer.Load(Path.Combine(_directory, "tokenizer.json"));
        ITextTokenizer viaLoader = TokenizerLoader.Load(_directory);

        Assert.Equal(tokenizer.Tokens, reloaded.Tokens);
        Assert.IsType<WordTokenizer>(viaLoader);
        Assert.Equal("the dog sat, 42 times!", viaLoader.Decode(tokenizer.Encode("The dog sat, 42 times!")));
    }

    [Fact]
    public void Load_RejectsAFileItDidNotWrite()
    {
        string path = Path.Combine(_directory, "tokenizer.json");
        File.WriteAllText(path, """{"model": {"type": "WordLevel", "vocab": {"<unk>": 0}, "unk_token": "<unk>"}, "pre_tokenizer": {"type": "Whitespace"}}""");

        var error = Assert.Throws<InvalidDataException>(() => WordTokenizer.Load(path));

        Assert.Contains(path, error.Message);
        Assert.IsType<HuggingFaceTokenizer>(TokenizerLoader.Load(path));
    }

    [Fact]
    public void Build_RejectsAVocabularyWithRoomOnlyForSpecialTokens()
        => Assert.Throws<ArgumentOutOfRangeException>(() => WordTokenizer.Build(Corpus, maxVocabulary: 4));
}
