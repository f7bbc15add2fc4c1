using Engine.Model.Tokenization;
using Engine.Training.Data;

namespace Engine.Tests.Data;

public sealed class JsonlDatasetTests : IDisposable
{
    // All six words are seen once, so they take ids 4.. in ordinal order: a 4, cat 5, dog 6, ran 7, sat 8, the 9.
    private static readonly WordTokenizer Tokenizer = WordTokenizer.Build(["the cat sat", "a dog ran"], maxVocabulary: 100);
    private const int Ignore = TrainingExample.IgnoreLabel;

    private readonly string _directory = Directory.CreateTempSubdirectory("jsonl-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void TextForm_TakesLossOnEveryTokenButBos()
    {
        string path = Write("""{"text": "The cat sat"}""");

        TrainingExample example = Assert.Single(JsonlDataset.Load(path, Tokenizer));

        Assert.Equal([1, 9, 5, 8, 2], example.InputIds);
        Assert.Equal([Ignore, 9, 5, 8, 2], example.Labels);
    }

    [Fact]
    public void PromptResponseForm_MasksThePrompt()
    {
        string path = Write("""{"prompt": "the cat", "response": "sat", "id": 17, "source": "ignored"}""");

        TrainingExample example = Assert.Single(JsonlDataset.Load(path, Tokenizer));

        Assert.Equal([1, 9, 5, 8, 2], example.InputIds);
        Assert.Equal([Ignore, Ignore, Ignore, 8, 2], example.Labels);
    }

    [Fact]
    public void PreTokenizedForm_IsTakenVerbatim()
    {
        string path = Write("""{"input_ids": [4, 6, 7], "labels": [-100, 6, 7]}""", """{"input_ids": [4, 6]}""");

        JsonlDataset dataset = JsonlDataset.Load(path, tokenizer: null);

        Assert.Equal(2, dataset.Count);
        Assert.Equal([4, 6, 7], dataset[0].InputIds);
        Assert.Equal([Ignore, 6, 7], dataset[0].Labels);
        Assert.Equal([4, 6], dataset[1].Labels);
    }

    [Fact]
    public void BosAndEosCanBeTurnedOff()
    {
        string path = Write("""{"text": "the cat sat"}""");

        TrainingExample example = Assert.Single(JsonlDataset.Load(path, Tokenizer, new DataOptions { AddBos = false, AddEos = false }));

        Assert.Equal([9, 5, 8], example.InputIds);
        Assert.Equal([9, 5, 8], example.Labels);
    }

    [Fact]
    public void AddBos_NeedsATokenizerWithABos()
    {
        string path = Write("""{"text": "x"}""");

        Assert.Throws<ArgumentException>(() => JsonlDataset.Load(path, new PlainTokenizer(), new DataOptions { AddBos = true }));
        Assert.Equal([220], Assert.Single(JsonlDataset.Load(path, new PlainTokenizer())).InputIds);
    }

    [Fact]
    public void MaxLength_TruncatesOrDrops()
    {
        string path = Write(
            """{"text": "the cat sat the cat sat"}""",
            """{"prompt": "the cat sat the", "response": "dog"}""",
            """{"text": "a dog"}""");

        JsonlDataset truncated = JsonlDataset.Load(path, Tokenizer, new DataOptions { MaxLength = 4 });
        JsonlDataset dropped = JsonlDataset.Load(path, Tokenizer, new DataOptions { MaxLength = 4, Overlength = OverlengthPolicy.Drop });

        // Line 2 cut to 4 tokens is all prompt, so nothing is left to learn: it is dropped either way.
        Assert.Equal(2, truncated.Count);
        Assert.Equal([1, 9, 5, 8], truncated[0].InputIds);
        Assert.Equal((1, 1), (truncated.TruncatedCount, truncated.DroppedCount));
        Assert.Equal([1, 4, 6, 2], Assert.Single(dropped).InputIds);
        Assert.Equal((0, 2), (dropped.TruncatedCount, dropped.DroppedCount));
    }

    [Fact]
    public void BlankLines_AreSkippedUnlessDisallowed()
    {
        string path = Write("""{"text": "a dog"}""", "   ", "", """{"text": "the cat"}""");

        Assert.Equal(2, JsonlDataset.Load(path, Tokenizer).Count);
        var error = Assert.Throws<InvalidDataException>(() => JsonlDataset.Load(path, Tokenizer, new DataOptions { SkipBlankLines = false }));
        Assert.Contains($"{path}, line 2:", error.Message);
    }

    [Theory]
    [InlineData("""{"text": "the cat" """, "is not valid JSON")]
    [InlineData("""[1, 2]""", "must be a JSON object")]
    [InlineData("""{"title": "the cat"}""", "has none of the fields")]
    [InlineData("""{"text": 5}""", "\"text\" must be a string, not Number")]
    [InlineData("""{"text": ""}""", "\"text\" is empty")]
    [InlineData("""{"text": "a", "prompt": "b", "response": "c"}""", "mixes the forms")]
    [InlineData("""{"prompt": "the cat", "input_ids": [1]}""", "mixes the forms")]
    [InlineData("""{"prompt": "the cat"}""", "has \"prompt\" but no \"response\"")]
    [InlineData("""{"prompt": "the cat", "response": ""}""", "\"response\" is empty")]
    [InlineData("""{"prompt": "the cat", "response": 3}""", "\"response\" must be a string")]
    [InlineData("""{"input_ids": [1, 99]}""", "token 1 has id 99, outside the vocabulary (0..9)")]
    [InlineData("""{"input_ids": [1, -5]}""", "token 1 has id -5")]
    [InlineData("""{"input_ids": [1, "x"]}""", "input_ids[1] must be a 32-bit integer")]
    [InlineData("""{"input_ids": 7}""", "\"input_ids\" must be an array")]
    [InlineData("""{"input_ids": []}""", "\"input_ids\" is empty")]
    [InlineData("""{"input_ids": [1, 2], "labels": [1]}""", "\"labels\" has 1 entries but \"input_ids\" has 2")]
    [InlineData("""{"input_ids": [1, 2], "labels": [-100, 42]}""", "labels[1] = 42 is neither -100 nor a token id")]
    [InlineData("""{"labels": [1, 2]}""", "has \"labels\" but no \"input_ids\"")]
    public void BadLine_NamesPathLineAndProblem(string badLine, string problem)
    {
        string path = Write("""{"text": "the cat"}""", badLine, """{"text": "a dog"}""");

        var error = Assert.Throws<InvalidDataException>(() => JsonlDataset.Load(path, Tokenizer));

        Assert.StartsWith($"{path}, line 2: ", error.Message);
        Assert.Contains(problem, error.Message);
    }

    [Fact]
    public void TextWithoutTokenizer_NamesPathAndLine()
    {
        string path = Write("""{"input_ids": [1, 2]}""", """{"text": "the cat"}""");

        var error = Assert.Throws<InvalidDataException>(() => JsonlDataset.Load(path, tokenizer: null));

        Assert.StartsWith($"{path}, line 2: ", error.Message);
        Assert.Contains("needs a tokenizer", error.Message);
    }

    [Fact]
    public void VocabularySizeOption_ChecksPreTokenizedIdsWithoutTokenizer()
    {
        string path = Write("""{"input_ids": [5, 12]}""");

        Assert.Single(JsonlDataset.Load(path, tokenizer: null));
        var error = Assert.Throws<InvalidDataException>(() => JsonlDataset.Load(path, null, new DataOptions { VocabularySize = 10 }));
        Assert.Contains($"{path}, line 1: token 1 has id 12", error.Message);
    }

    private string Write(params string[] lines)
    {
        string path = Path.Combine(_directory, "data.jsonl");
        File.WriteAllLines(path, lines);
        return path;
    }

    /// <summary>A tokenizer without special tokens: one id per character, offset by 100.</summary>
    private sealed class PlainTokenizer : ITextTokenizer
    {
        public int VocabularySize => 1000;

        public int? BosId => null;

        public int? EosId => null;

        public int? PadId => null;

        public int? UnknownId => null;

        public IReadOnlyList<int> Encode(string text) => text.Select(c => 100 + c % 900).ToList();

        public string Decode(IEnumerable<int> ids) => new(ids.Select(id => (char)(id - 100)).ToArray());

        public string Describe() => "plain";
    }
}
