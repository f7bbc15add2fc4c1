using System.Text.Json;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;
using Engine.Tests.Support;

namespace Engine.Tests.Model;

public class LlamaModelTests
{
    private static LlamaConfig TinyConfig(bool tied = false) => new()
    {
        VocabSize = 37, HiddenSize = 24, IntermediateSize = 40, NumHiddenLayers = 2, NumAttentionHeads = 6, NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 32, TieWordEmbeddings = tied, RmsNormEps = 1e-5,
    };

    /// <summary>
    /// tests/fixtures/llama-tiny was made by tests/fixtures/make_llama_fixture.py (PyTorch, following HF modeling_llama).
    /// Loss, logits and the gradient of every weight must match. Tolerance: float32 through two layers of matmuls,
    /// softmax and norms accumulates ~10-100 ulp of the values involved; 2e-5 of each tensor's scale bounds that while a
    /// layout slip (rotate-half vs interleaved, wrong kv-head mapping) changes results by 1e-1 or more.
    /// </summary>
    [Fact]
    public void MatchesThePyTorchReference()
    {
        string directory = RepositoryPaths.Fixture("llama-tiny");
        using var scope = new TensorScope();
        using var model = LlamaModel.Load(directory);
        using var expected = SafetensorsFile.Open(Path.Combine(directory, "expected.safetensors"));
        double expectedLoss = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "expected.json"))).RootElement.GetProperty("loss").GetDouble();

        var inputIds = expected.Load("input_ids");
        var targets = expected.Load("targets");
        using var tape = new Tape();
        var logits = model.Forward(inputIds);
        var loss = Ops.CrossEntropy(logits, targets);
        Assert.Equal(expectedLoss, loss.Data.Item(), expectedLoss * 1e-5);
        Assertions.Close(ToDoubles(expected.Load("logits")), ToDoubles(logits.Data), 2e-5, "logits");

        tape.Backward(loss);
        foreach (var parameter in model.Parameters)
        {
            Assertions.Close(ToDoubles(expected.Load($"grad.{parameter.Name}")), ToDoubles(parameter.Grad!), 2e-5, $"gradient of {parameter.Name}");
        }
    }

    private static double[] ToDoubles(Tensor tensor) => tensor.To(DType.Float64).ToArray<double>();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SaveAndLoadIsBitIdentical(bool tied)
    {
        using var directory = new TemporaryDirectory();
        using var model = LlamaModel.CreateRandom(TinyConfig(tied), seed: 5);
        model.Save(directory.Path);
        using var reloaded = LlamaModel.Load(directory.Path);
        Assert.Equal(model.Config, reloaded.Config);
        Assert.Equal(model.Parameters.Select(p => p.Name), reloaded.Parameters.Select(p => p.Name));
        Assert.Equal(tied, reloaded.LanguageModelHead is null);
        foreach (var (original, loaded) in model.Parameters.Zip(reloaded.Parameters))
        {
            Assert.Equal(original.Data.ToArray<float>(), loaded.Data.ToArray<float>());
        }
    }

    [Fact]
    public void CachedGreedyGenerationEqualsFullRecomputation()
    {
        using var model = LlamaModel.CreateRandom(TinyConfig(), seed: 9);
        int[] prompt = [3, 14, 15, 9, 2];
        var generated = Generation.Generate(model, prompt, new SamplingOptions { MaxNewTokens = 8 });
        Assert.Equal(8, generated.Count);
        // Without a cache: run the whole sequence each step and take the argmax of the last position.
        var sequence = prompt.ToList();
        using var noGrad = GradMode.NoGrad();
        foreach (int token in generated)
        {
            using var scope = new TensorScope();
            var logits = model.Forward(Tensor.FromArray<int>(sequence.ToArray(), [1, sequence.Count]));
            var last = logits.Data.Narrow(1, sequence.Count - 1, 1).ToArray<float>();
            Assert.Equal(Array.IndexOf(last, last.Max()), token);
            sequence.Add(token);
        }
    }

    [Fact]
    public void GenerationStopsAtAStopToken()
    {
        using var model = LlamaModel.CreateRandom(TinyConfig(), seed: 9);
        var free = Generation.Generate(model, [1, 2, 3], new SamplingOptions { MaxNewTokens = 6 });
        var stopped = Generation.Generate(model, [1, 2, 3], new SamplingOptions { MaxNewTokens = 6, StopTokens = [free[1]] });
        Assert.Equal(free.Take(free.ToList().IndexOf(free[1]) + 1), stopped);
    }

    [Fact]
    public void SamplingRespectsTopKAndIsSeeded()
    {
        float[] logits = [0f, 5f, 4f, -1f, 4.5f];
        var options = new SamplingOptions { Temperature = 1.0, TopK = 2 };
        var random = new Random(1);
        var draws = Enumerable.Range(0, 400).Select(_ => Generation.Sample(logits, options, random)).ToArray();
        Assert.All(draws, token => Assert.Contains(token, new[] { 1, 4 }));
        // p(1) = e^5 / (e^5 + e^4.5) ≈ 0.62; 400 draws give a standard error of 0.024.
        Assert.InRange(draws.Count(t => t == 1) / 400.0, 0.62 - 0.1, 0.62 + 0.1);
        var nucleus = new SamplingOptions { Temperature = 1.0, TopP = 0.5 };
        Assert.All(Enumerable.Range(0, 50), _ => Assert.Equal(1, Generation.Sample(logits, nucleus, random)));
    }

    [Fact]
    public void InvalidConfigNamesTheFileAndField()
    {
        using var directory = new TemporaryDirectory();
        string path = Path.Combine(directory.Path, "config.json");
        File.WriteAllText(path, """{"vocab_size": 10, "hidden_size": 30, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 4}""");
        var error = Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("num_attention_heads", error.Message);
        File.WriteAllText(path, """{"vocab_size": 10, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4}""");
        Assert.Contains("intermediate_size", Assert.Throws<InvalidDataException>(() => LlamaConfig.Load(path)).Message);
    }

    [Fact]
    public void CheckpointShapeMismatchIsNamed()
    {
        using var directory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(TinyConfig(), seed: 1))
        {
            model.Save(directory.Path);
        }
        (TinyConfig() with { IntermediateSize = 44 }).Save(Path.Combine(directory.Path, "config.json"));
        var error = Assert.Throws<InvalidDataException>(() => LlamaModel.Load(directory.Path));
        Assert.Contains("mlp.gate_proj.weight", error.Message);
        Assert.Contains("[40, 24]", error.Message);
    }
}
