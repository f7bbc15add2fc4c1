using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Training;

namespace Engine.Tests.Cli;

/// <summary>The CLI fixture, plus a LoRA adapter trained on its model through the CLI and that adapter merged into a copy of the model.</summary>
public sealed class AdapterCliFixture : IDisposable
{
    public AdapterCliFixture()
    {
        Cli.Pretrain.Succeeded();
        BaseWeightsHash = AdapterCliTests.Hash(Path.Combine(Cli.Model, "model.safetensors"));
        LoraTrain = CliRun.Invoke(AdapterCliTests.Train(Cli, LoraAdapter, "lora", 4, "--rank", "2", "--alpha", "4", "--target", "q_proj,v_proj",
            "--eval-data", Cli.TextData));
        Merge = CliRun.Invoke("merge", "--model", Cli.Model, "--adapter", LoraAdapter, "--out", Merged);
    }

    public CliFixture Cli { get; } = new();

    /// <summary>SHA-256 of the base model's weights before any adapter command ran.</summary>
    public string BaseWeightsHash { get; }

    public string LoraAdapter => Path.Combine(Cli.Root, "lora");

    public string Merged => Path.Combine(Cli.Root, "lora-merged");

    public CliRun LoraTrain { get; }

    public CliRun Merge { get; }

    public void Dispose() => Cli.Dispose();
}

public class AdapterCliTests(AdapterCliFixture fixture) : IClassFixture<AdapterCliFixture>
{
    private const string Layer0 = "base_model.model.model.layers.0.";

    private CliFixture Cli => fixture.Cli;

    /// <summary>
    /// Trains on the prompt/response data at a constant, high learning rate: a few steps move the adapter far enough
    /// to change the loss, and a 2-step run is the first half of a 4-step one.
    /// </summary>
    internal static string[] Train(CliFixture cli, string output, string method, int steps, params string[] flags) =>
        ["train", "--model", cli.Model, "--data", cli.PromptData, "--out", output, "--method", method, "--steps", steps.ToString(CultureInfo.InvariantCulture),
         "--batch-size", "2", "--seq-len", "32", .. LearningRate(method), "--schedule", "constant", "--warmup", "0", .. flags];

    /// <summary>VB-LoRA refuses --lr: its bank and logits have their own rates.</summary>
    private static string[] LearningRate(string method) => method == "vblora" ? ["--bank-lr", "1e-2", "--logits-lr", "1e-2"] : ["--lr", "1e-2"];

    internal static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    internal static JsonObject ReadConfig(string adapter) => JsonNode.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json")))!.AsObject();

    /// <summary>Every tensor of the adapter file: its stored dtype and shape.</summary>
    internal static Dictionary<string, (string DType, int[] Shape)> ReadTensors(string adapter)
    {
        using var file = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        return file.Names.ToDictionary(name => name, name => (file.Entry(name).DTypeName, file.Entry(name).Shape));
    }

    /// <summary>eval --json's loss over the fixture's text data, of <paramref name="model"/> with <paramref name="adapter"/> merged in if given.</summary>
    internal static double EvalLoss(CliFixture cli, string model, string? adapter = null)
    {
        string[] args = ["eval", "--model", model, "--data", cli.TextData, "--json", .. adapter is null ? [] : new[] { "--adapter", adapter }];
        using var json = JsonDocument.Parse(CliRun.Invoke(args).Succeeded().Stdout);
        return json.RootElement.GetProperty("loss").GetDouble();
    }

    internal static void AssertRelativelyEqual(double expected, double actual, double relative, string what) =>
        Assert.True(Math.Abs(expected - actual) <= relative * Math.Abs(expected), $"{what}: expected {expected:R}, got {actual:R}");

    [Fact]
    public void LoraTrainWritesAPeftAdapterAndLeavesTheBaseModelAlone()
    {
        fixture.LoraTrain.Succeeded();
        var config = ReadConfig(fixture.LoraAdapter);
        Assert.Equal("LORA", (string?)config["peft_type"]);
        Assert.Equal(2, (int?)config["r"]);
        Assert.Equal(4.0, (double?)config["lora_alpha"]);
        Assert.Equal(["q_proj", "v_proj"], config["target_modules"]!.AsArray().Select(name => (string?)name));
        Assert.Equal(Cli.Model, (string?)config["base_model_name_or_path"]);
        Assert.Contains("LORA adapter (128 trained parameters) saved to", fixture.LoraTrain.Stdout);

        // The fixture model: hidden 16, 2 heads of 8 and no grouped-query attention, so q_proj and v_proj are both [16, 16].
        var tensors = ReadTensors(fixture.LoraAdapter);
        Assert.Equal(
            [.. from module in new[] { "q_proj", "v_proj" } from matrix in new[] { "lora_A", "lora_B" } select $"{Layer0}self_attn.{module}.{matrix}.weight"],
            tensors.Keys.Order(StringComparer.Ordinal));
        foreach (string module in new[] { "q_proj", "v_proj" })
        {
            Assert.Equal([2, 16], tensors[$"{Layer0}self_attn.{module}.lora_A.weight"].Shape);
            Assert.Equal([16, 2], tensors[$"{Layer0}self_attn.{module}.lora_B.weight"].Shape);
        }

        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(fixture.LoraAdapter, "model.safetensors")), "an adapter run saves the adapter, not a full model");
        var metrics = MetricsLog.Read(Path.Combine(fixture.LoraAdapter, "metrics.csv"));
        Assert.Equal([1, 2, 3, 4], metrics.Select(m => m.Step));
        Assert.True(double.IsFinite(metrics[^1].Loss), $"final loss {metrics[^1].Loss}");
    }

    [Fact]
    public void EvalWithTheAdapterEqualsEvalOfTheMergedModel()
    {
        fixture.Merge.Succeeded();
        foreach (string file in new[] { "config.json", "model.safetensors", "tokenizer.json" })
        {
            Assert.True(File.Exists(Path.Combine(fixture.Merged, file)), $"the merged folder lacks {file}");
        }
        double baseLoss = EvalLoss(Cli, Cli.Model);
        double adapted = EvalLoss(Cli, Cli.Model, fixture.LoraAdapter);
        double merged = EvalLoss(Cli, fixture.Merged);
        Assert.True(Math.Abs(adapted - baseLoss) > 1e-3, $"the trained adapter left the loss at {adapted:R} (base {baseLoss:R})");
        AssertRelativelyEqual(merged, adapted, 1e-5, "loss with --adapter vs the merged model");
        // eval --adapter merges too; the training run's final eval_loss ran the adapter unmerged (x Wᵀ + s · x Aᵀ Bᵀ) on the same file.
        AssertRelativelyEqual(MetricsLog.Read(Path.Combine(fixture.LoraAdapter, "metrics.csv"))[^1].EvalLoss!.Value, adapted, 1e-5, "loss with --adapter vs unmerged in training");
        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
    }

    [Fact]
    public void GenerateWithTheAdapterEqualsGenerateWithTheMergedModel()
    {
        fixture.Merge.Succeeded();
        string[] Generate(string model, params string[] flags) => ["generate", "--model", model, "--prompt", "the cat", "--max-new-tokens", "8", .. flags];
        var adapted = CliRun.Invoke(Generate(Cli.Model, "--adapter", fixture.LoraAdapter)).Succeeded();
        var merged = CliRun.Invoke(Generate(fixture.Merged)).Succeeded();
        Assert.NotEmpty(adapted.Stdout.Trim());
        Assert.Equal(merged.Stdout, adapted.Stdout);
        Assert.Contains("LORA on 2 modules", adapted.Stderr);
    }

    [Fact]
    public void LoraSpTrainsAndSavesALoraAdapterWithItsMaskSettings()
    {
        string output = Path.Combine(Cli.Root, "lora-sp");
        CliRun.Invoke(Train(Cli, output, "lora-sp", 3, "--rank", "2", "--frozen-fraction", "0.5", "--freeze-granularity", "row")).Succeeded();

        var config = ReadConfig(output);
        Assert.Equal("LORA", (string?)config["peft_type"]);
        Assert.Equal(0.5, (double?)config["lora_sp_frozen_fraction"]);
        Assert.Equal("row", (string?)config["lora_sp_granularity"]);
        Assert.Equal(0, (int?)config["lora_sp_redraw_every"]);
        Assert.NotNull(config["lora_sp_seed"]);

        // Row granularity freezes one of B's two rank columns at its zero start and trains the other: the file holds full matrices.
        using var file = SafetensorsFile.Open(Path.Combine(output, "adapter_model.safetensors"));
        var bKeys = file.Names.Where(name => name.EndsWith(".lora_B.weight", StringComparison.Ordinal)).ToList();
        Assert.Equal(7, bKeys.Count);
        Assert.Equal(7, file.Names.Count(name => name.EndsWith(".lora_A.weight", StringComparison.Ordinal)));
        foreach (string key in bKeys)
        {
            using var b = file.Load(key);
            float[] values = b.ToArray<float>();
            int rows = b.Dim(0);
            bool[] columnIsZero = [.. Enumerable.Range(0, 2).Select(column => Enumerable.Range(0, rows).All(row => values[row * 2 + column] == 0))];
            Assert.True(columnIsZero.Count(zero => zero) == 1, $"{key}: expected exactly one all-zero (frozen) column of 2, got [{string.Join(", ", columnIsZero)}]");
        }
    }

    [Fact]
    public void VbLoraTrainsAndSavesFullOrTopKOnlyFiles()
    {
        // L = 8 divides the fixture model's hidden size 16, its key/value width 16 and its intermediate size 64 (hidden · 8/3 rounded up to 32).
        string[] flags = ["--rank", "2", "--vector-length", "8", "--num-vectors", "8", "--topk", "2"];
        string full = Path.Combine(Cli.Root, "vblora"), topK = Path.Combine(Cli.Root, "vblora-topk");
        CliRun.Invoke(Train(Cli, full, "vblora", 3, flags)).Succeeded();
        CliRun.Invoke(Train(Cli, topK, "vblora", 3, [.. flags, "--save-topk-only"])).Succeeded();

        var config = ReadConfig(full);
        Assert.Equal("VBLORA", (string?)config["peft_type"]);
        Assert.Equal(8, (int?)config["num_vectors"]);
        Assert.Equal(8, (int?)config["vector_length"]);
        Assert.Equal(2, (int?)config["topk"]);
        Assert.Equal(false, (bool?)config["save_only_topk_weights"]);
        Assert.Equal(true, (bool?)ReadConfig(topK)["save_only_topk_weights"]);

        var tensors = ReadTensors(full);
        Assert.Equal([8, 8], tensors["base_model.vblora_vector_bank"].Shape);
        Assert.Equal(1 + 7 * 2, tensors.Count);
        Assert.Equal([2, 8, 8], tensors[$"{Layer0}mlp.down_proj.vblora_logits_A"].Shape);
        Assert.Equal([8, 2, 8], tensors[$"{Layer0}mlp.up_proj.vblora_logits_B"].Shape);

        var topKTensors = ReadTensors(topK);
        Assert.Equal([8, 8], topKTensors["base_model.vblora_vector_bank"].Shape);
        var indices = topKTensors.Where(entry => entry.Key.EndsWith("_topk_indices", StringComparison.Ordinal)).ToList();
        var weights = topKTensors.Where(entry => entry.Key.EndsWith("_topk_weights", StringComparison.Ordinal)).ToList();
        Assert.Equal(7 * 2, indices.Count);
        Assert.Equal(7 * 2, weights.Count);
        Assert.Equal(1 + indices.Count + weights.Count, topKTensors.Count);
        Assert.All(indices, entry => Assert.Equal(("U8", 2), (entry.Value.DType, entry.Value.Shape[^1])));
        Assert.All(weights, entry => Assert.Equal(("F32", 1), (entry.Value.DType, entry.Value.Shape[^1])));
        Assert.Equal([2, 8, 2], topKTensors[$"{Layer0}mlp.down_proj.vblora_logits_A_topk_indices"].Shape);

        // The same run saved both ways: the top-k form selects and weights the same bank vectors.
        AssertRelativelyEqual(EvalLoss(Cli, Cli.Model, full), EvalLoss(Cli, Cli.Model, topK), 1e-5, "loss with the top-k-only adapter vs the full one");

        var refused = CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "vblora-continued"), "vblora", 1, "--init-adapter", topK));
        refused.FailedWithOneLine("save_only_topk_weights");
    }

    [Theory]
    [InlineData("lora", "--rank", "2", "--adapter-dropout", "0.1")]
    [InlineData("lora-sp", "--rank", "2", "--redraw-every", "1")]
    [InlineData("vblora", "--rank", "2", "--vector-length", "8", "--num-vectors", "8")]
    public void ResumedAdapterTrainingContinuesTheRunExactly(string method, params string[] flags)
    {
        string uninterrupted = Path.Combine(Cli.Root, $"resume-{method}-uninterrupted"), resumed = Path.Combine(Cli.Root, $"resume-{method}");
        CliRun.Invoke(Train(Cli, uninterrupted, method, 4, [.. flags, "--checkpoint-every", "0"])).Succeeded();
        CliRun.Invoke(Train(Cli, resumed, method, 2, [.. flags, "--checkpoint-every", "2"])).Succeeded();
        var resume = CliRun.Invoke(Train(Cli, resumed, method, 4, [.. flags, "--checkpoint-every", "2", "--resume"])).Succeeded();

        Assert.Contains("at step 2 of 4", resume.Stderr);
        var expected = MetricsLog.Read(Path.Combine(uninterrupted, "metrics.csv"));
        var actual = MetricsLog.Read(Path.Combine(resumed, "metrics.csv"));
        Assert.Equal(expected.Select(m => (m.Step, m.Loss)), actual.Select(m => (m.Step, m.Loss)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(uninterrupted, "adapter_model.safetensors")), File.ReadAllBytes(Path.Combine(resumed, "adapter_model.safetensors")));
    }

    [Theory]
    [InlineData("lora", new[] { "--rank must be at least 1 (got 0)" }, "--rank", "0")]
    [InlineData("lora", new[] { "rank 17", "= 16", "model.layers.0.self_attn.q_proj" }, "--rank", "17")]
    [InlineData("lora", new[] { "'no_such_proj'" }, "--target", "no_such_proj")]
    [InlineData("vblora", new[] { "vector length 5", "model.layers.0.self_attn.q_proj" }, "--vector-length", "5")]
    [InlineData("vblora", new[] { "top-k", "4", "got 5" }, "--vector-length", "8", "--num-vectors", "4", "--topk", "5")]
    [InlineData("lora", new[] { "--save-topk-only applies to --method vblora, not lora" }, "--save-topk-only")]
    [InlineData("vblora", new[] { "--alpha applies to --method lora or lora-sp, not vblora" }, "--alpha", "4")]
    [InlineData("full", new[] { "--rank applies to --method lora or lora-sp or vblora, not full" }, "--rank", "4")]
    [InlineData("vblora", new[] { "--weight-decay does not apply to --method vblora" }, "--weight-decay", "0.1")]
    public void BadAdapterFlagsExitWithOneLineNamingTheCulprit(string method, string[] expected, params string[] flags) =>
        AssertTrainingRefused(Cli, method, expected, flags);

    /// <summary>A 1-step train with <paramref name="flags"/> fails with one line holding every <paramref name="expected"/> fragment, and saves no adapter.</summary>
    internal static void AssertTrainingRefused(CliFixture cli, string method, string[] expected, string[] flags)
    {
        string output = Path.Combine(cli.Root, "never");
        CliRun.Invoke(Train(cli, output, method, 1, flags)).FailedWithOneLine(expected);
        Assert.False(File.Exists(Path.Combine(output, "adapter_config.json")));
    }

    [Fact]
    public void AdapterFolderWithoutAConfigIsRefused()
    {
        string notAnAdapter = Path.Combine(Cli.Root, "not-an-adapter");
        Directory.CreateDirectory(notAnAdapter);
        var run = CliRun.Invoke("eval", "--model", Cli.Model, "--data", Cli.TextData, "--adapter", notAnAdapter);
        run.FailedWithOneLine(notAnAdapter, "adapter_config.json");
    }

    [Fact]
    public void AdapterOfAnotherBaseModelIsRefusedNamingTheTensorAndBothShapes()
    {
        fixture.LoraTrain.Succeeded();
        string wider = Path.Combine(Cli.Root, "model-hidden-32");
        CliRun.Invoke("pretrain", "--tokenizer", Cli.Tokenizer, "--data", Cli.TextData, "--out", wider, "--hidden", "32", "--layers", "1", "--heads", "2",
            "--max-positions", "64", "--steps", "1", "--batch-size", "2", "--seq-len", "16", "--checkpoint-every", "0").Succeeded();
        var run = CliRun.Invoke("eval", "--model", wider, "--data", Cli.TextData, "--adapter", fixture.LoraAdapter);
        run.FailedWithOneLine($"'{Layer0}self_attn.q_proj.lora_A.weight'", "[2, 16]", "[2, 32]");
    }

    [Fact]
    public void InitAdapterContinuesWithTheAdaptersOwnSettingsAndOnlyUnderItsMethod()
    {
        fixture.LoraTrain.Succeeded();
        string continued = Path.Combine(Cli.Root, "lora-continued");
        CliRun.Invoke(Train(Cli, continued, "lora", 1, "--init-adapter", fixture.LoraAdapter, "--checkpoint-every", "0")).Succeeded();
        var config = ReadConfig(continued);
        Assert.Equal(2, (int?)config["r"]);
        Assert.Equal(4.0, (double?)config["lora_alpha"]);
        Assert.Equal(ReadTensors(fixture.LoraAdapter).Keys.Order(), ReadTensors(continued).Keys.Order());

        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "lora", 1, "--init-adapter", fixture.LoraAdapter, "--rank", "4"))
            .FailedWithOneLine("--rank", "settings in its config");
        foreach (string method in new[] { "vblora", "lora-sp" })
        {
            var run = CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), method, 1, "--init-adapter", fixture.LoraAdapter));
            run.FailedWithOneLine(fixture.LoraAdapter, "a lora adapter", $"not {method}");
        }
    }

    [Fact]
    public void IstTrainsALoraAdapterLayerByLayer()
    {
        string output = Path.Combine(Cli.Root, "lora-ist");
        var run = CliRun.Invoke(Train(Cli, output, "lora", 3, "--rank", "2", "--ist", "--ist-interval", "1", "--ist-reward-batch", "4")).Succeeded();
        Assert.Contains("LORA adapter", run.Stdout);
        Assert.Equal(14, ReadTensors(output).Count(pair => pair.Key.Contains(".layers.0.")));  // all seven projections of the one layer, A and B
        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "lora", 1, "--ist-interval", "2")).FailedWithOneLine("--ist-interval applies with --ist only");
        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "full", 1, "--ist")).FailedWithOneLine("--ist applies to --method");
        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "lora", 1, "--ist", "--ist-active-fraction", "0")).FailedWithOneLine("active fraction must be in (0, 1]");
    }

    [Fact]
    public void MergeRefusesToWriteOverTheBaseModel()
    {
        fixture.LoraTrain.Succeeded();
        foreach (string output in new[] { Cli.Model, Cli.Model + Path.DirectorySeparatorChar, Path.Combine(Cli.Model, ".") })
        {
            var run = CliRun.Invoke("merge", "--model", Cli.Model, "--adapter", fixture.LoraAdapter, "--out", output);
            run.FailedWithOneLine("--out", "base model");
        }
        CliRun.Invoke("merge", "--model", Cli.Model, "--adapter", fixture.LoraAdapter, "--out", fixture.LoraAdapter).FailedWithOneLine("--out", "adapter's folder");
        Assert.False(File.Exists(Path.Combine(fixture.LoraAdapter, "model.safetensors")));
        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
    }
}
