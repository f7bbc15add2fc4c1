using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Tests.Support;

namespace Engine.Tests.IO;

public sealed class CheckpointDirectoryTests : IDisposable
{
    private readonly TemporaryDirectory folder = new();

    public void Dispose() => folder.Dispose();

    private string FileIn(string name) => Path.Combine(folder.Path, name);

    /// <summary>Seven tensors of 48 bytes each except one of 400, in an order that is not sorted by name.</summary>
    private static List<KeyValuePair<string, Tensor>> Weights() =>
    [
        new("model.embed_tokens.weight", Tensor.Uniform([3, 4], -1, 1, seed: 1)),
        new("model.layers.0.mlp.weight", Tensor.Uniform([100], -1, 1, seed: 2)),
        new("model.layers.0.norm.weight", Tensor.Uniform([24], -1, 1, seed: 3, DType.BFloat16)),
        new("model.layers.1.attn.weight", Tensor.Uniform([6], -1, 1, seed: 4, DType.Float64)),
        new("model.layers.1.ids", Tensor.FromArray(Enumerable.Range(0, 12).ToArray(), 12)),
        new("model.norm.weight", Tensor.Uniform([12], -1, 1, seed: 5)),
        new("lm_head.weight", Tensor.FromArray(Enumerable.Range(0, 6).Select(i => (long)i).ToArray(), 2, 3)),
    ];

    private static void AssertSameTensors(List<KeyValuePair<string, Tensor>> expected, CheckpointDirectory checkpoint)
    {
        Assert.Equal(expected.Select(pair => pair.Key), checkpoint.Names);
        foreach (var (name, tensor) in expected)
        {
            var loaded = checkpoint.Load(name);
            Assert.Equal(tensor.DType, loaded.DType);
            Assert.Equal(tensor.ShapeArray(), loaded.ShapeArray());
            Assert.Equal(tensor.ShapeArray(), checkpoint.Entry(name).Shape);
            Assert.Equal(tensor.Format(int.MaxValue), loaded.Format(int.MaxValue));
        }
    }

    private string[] FileNames() => [.. Directory.GetFiles(folder.Path).Select(path => Path.GetFileName(path)).Order(StringComparer.Ordinal)];

    [Fact]
    public void CheckpointThatFitsIsOneFile()
    {
        using var scope = new TensorScope();
        var weights = Weights();
        CheckpointDirectory.WriteSharded(folder.Path, weights, maxShardBytes: 1 << 20);

        Assert.Equal([CheckpointDirectory.SingleFileName], FileNames());
        using var checkpoint = CheckpointDirectory.Open(folder.Path);
        AssertSameTensors(weights, checkpoint);
        Assert.True(checkpoint.Contains("lm_head.weight"));
        Assert.False(checkpoint.Contains("missing"));
        Assert.Equal([0, 1, 2, 3, 4, 5], checkpoint.Load("lm_head.weight", DType.Int32).ToArray<int>());
    }

    [Fact]
    public void LargeCheckpointIsShardedWithAnIndex()
    {
        using var scope = new TensorScope();
        var weights = Weights();
        CheckpointDirectory.WriteSharded(folder.Path, weights, maxShardBytes: 100);

        // Greedy in order, at most 100 bytes a shard; the 400-byte tensor gets a shard of its own.
        string[] shardNames = [.. Enumerable.Range(1, 5).Select(i => $"model-{i:D5}-of-00005.safetensors")];
        Assert.Equal([.. shardNames, CheckpointDirectory.IndexFileName], FileNames());
        var index = JsonNode.Parse(File.ReadAllText(FileIn(CheckpointDirectory.IndexFileName)))!;
        Assert.Equal(weights.Sum(pair => pair.Value.ElementCount * pair.Value.DType.SizeInBytes()), (long)index["metadata"]!["total_size"]!);
        var weightMap = index["weight_map"]!.AsObject().ToDictionary(pair => pair.Key, pair => (string)pair.Value!);
        Assert.Equal(
            [shardNames[0], shardNames[1], shardNames[2], shardNames[2], shardNames[3], shardNames[3], shardNames[4]],
            weights.Select(pair => weightMap[pair.Key]));

        using var checkpoint = CheckpointDirectory.Open(folder.Path);
        AssertSameTensors(weights, checkpoint);
        using var secondShard = SafetensorsFile.Open(FileIn(shardNames[1]));
        Assert.Equal(["model.layers.0.mlp.weight"], secondShard.Names);
        Assert.Equal("pt", secondShard.Metadata["format"]);
    }

    [Fact]
    public void RewritingReplacesTheOtherLayout()
    {
        using var scope = new TensorScope();
        var weights = Weights();
        CheckpointDirectory.WriteSharded(folder.Path, weights, maxShardBytes: 100);
        CheckpointDirectory.WriteSharded(folder.Path, weights.Take(2), maxShardBytes: 1 << 20);
        Assert.Equal([CheckpointDirectory.SingleFileName], FileNames());

        CheckpointDirectory.WriteSharded(folder.Path, weights, maxShardBytes: 500);
        Assert.Equal(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", CheckpointDirectory.IndexFileName], FileNames());
        using var checkpoint = CheckpointDirectory.Open(folder.Path);
        AssertSameTensors(weights, checkpoint);
    }

    [Fact]
    public void IndexNamingAMissingShardIsAnError()
    {
        using var scope = new TensorScope();
        CheckpointDirectory.WriteSharded(folder.Path, Weights(), maxShardBytes: 100);
        File.Delete(FileIn("model-00002-of-00005.safetensors"));

        var error = Assert.Throws<InvalidDataException>(() => CheckpointDirectory.Open(folder.Path));
        Assert.Contains(CheckpointDirectory.IndexFileName, error.Message);
        Assert.Contains("'model.layers.0.mlp.weight'", error.Message);
        Assert.Contains("model-00002-of-00005.safetensors", error.Message);
    }

    [Fact]
    public void IndexEntryMissingFromItsShardIsAnError()
    {
        using var scope = new TensorScope();
        CheckpointDirectory.WriteSharded(folder.Path, Weights(), maxShardBytes: 100);
        string indexPath = FileIn(CheckpointDirectory.IndexFileName);
        var index = JsonNode.Parse(File.ReadAllText(indexPath))!;
        index["weight_map"]!["ghost.weight"] = "model-00001-of-00005.safetensors";
        File.WriteAllText(indexPath, index.ToJsonString());

        var error = Assert.Throws<InvalidDataException>(() => CheckpointDirectory.Open(folder.Path));
        Assert.Contains(CheckpointDirectory.IndexFileName, error.Message);
        Assert.Contains("'ghost.weight'", error.Message);
        Assert.Contains("model-00001-of-00005.safetensors", error.Message);
    }

    [Theory]
    [InlineData("""{"weight_map": {"a": "model-00001-of-00001.safetensors",}}""", "JSON")]
    [InlineData("""{"metadata": {"total_size": 8}}""", "'weight_map'")]
    [InlineData("""{"weight_map": ["a"]}""", "'weight_map'")]
    [InlineData("""{"weight_map": {"a": 3}}""", "'a'")]
    [InlineData("""{"weight_map": {"a": "../model.safetensors"}}""", "'a'")]
    [InlineData("""{"weight_map": {"a": "x.safetensors", "a": "x.safetensors"}}""", "'a'")]
    public void MalformedIndexIsAnError(string indexJson, string fragment)
    {
        File.WriteAllText(FileIn(CheckpointDirectory.IndexFileName), indexJson);
        var error = Assert.Throws<InvalidDataException>(() => CheckpointDirectory.Open(folder.Path));
        Assert.Contains(CheckpointDirectory.IndexFileName, error.Message);
        Assert.Contains(fragment, error.Message);
    }

    [Fact]
    public void MissingFilesAndTensorsAreNamed()
    {
        using var scope = new TensorScope();
        var noCheckpoint = Assert.Throws<FileNotFoundException>(() => CheckpointDirectory.Open(folder.Path));
        Assert.Contains(CheckpointDirectory.SingleFileName, noCheckpoint.Message);
        Assert.Contains(CheckpointDirectory.IndexFileName, noCheckpoint.Message);
        Assert.Throws<DirectoryNotFoundException>(() => CheckpointDirectory.Open(FileIn("absent")));

        CheckpointDirectory.WriteSharded(folder.Path, Weights(), maxShardBytes: 100);
        using var checkpoint = CheckpointDirectory.Open(folder.Path);
        var missing = Assert.Throws<KeyNotFoundException>(() => checkpoint.Load("absent.weight"));
        Assert.Contains("'absent.weight'", missing.Message);
        Assert.Contains(folder.Path, missing.Message);
    }

    [Fact]
    public void DuplicateNamesAreRefusedBeforeWriting()
    {
        using var scope = new TensorScope();
        var error = Assert.Throws<ArgumentException>(() =>
            CheckpointDirectory.WriteSharded(folder.Path, [new("w", Tensor.Zeros([4])), new("w", Tensor.Zeros([4]))], maxShardBytes: 4));
        Assert.Contains("'w'", error.Message);
        Assert.Empty(FileNames());
    }
}
