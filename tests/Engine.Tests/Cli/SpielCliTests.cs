using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Model;
using Engine.Training;
using static Engine.Tests.Cli.AdapterCliTests;

namespace Engine.Tests.Cli;

/// <summary>The CLI fixture, plus SpIEL-AG and SpIEL-MA adapters trained on its model through the CLI and the AG one merged into a copy of the model.</summary>
public sealed class SpielCliFixture : IDisposable
{
    /// <summary>
    /// 64 deltas over the fixture model's 4,096 target weights; windows of 2 steps every 4 (steps 1-2, 5-6), so a 6-step
    /// run replaces every slot after step 2 and trains the regrown ones for 4 steps.
    /// </summary>
    internal static readonly string[] Flags = ["--delta-count", "64", "--reselection-interval", "4", "--accumulation-steps", "2"];

    public SpielCliFixture()
    {
        Cli.Pretrain.Succeeded();
        BaseWeightsHash = Hash(Path.Combine(Cli.Model, "model.safetensors"));
        Runs = new Dictionary<string, CliRun>
        {
            ["spiel-ag"] = CliRun.Invoke(Train(Cli, Adapter("spiel-ag"), "spiel-ag", 6, [.. Flags, "--eval-data", Cli.TextData, "--checkpoint-every", "0"])),
            ["spiel-ma"] = CliRun.Invoke(Train(Cli, Adapter("spiel-ma"), "spiel-ma", 6, [.. Flags, "--checkpoint-every", "0"])),
        };
        Merge = CliRun.Invoke("merge", "--model", Cli.Model, "--adapter", Adapter("spiel-ag"), "--out", Merged);
    }

    public CliFixture Cli { get; } = new();

    /// <summary>SHA-256 of the base model's weights before any adapter command ran.</summary>
    public string BaseWeightsHash { get; }

    /// <summary>The training run of each method, by method name.</summary>
    public IReadOnlyDictionary<string, CliRun> Runs { get; }

    public string Merged => Path.Combine(Cli.Root, "spiel-ag-merged");

    public CliRun Merge { get; }

    public string Adapter(string method) => Path.Combine(Cli.Root, method);

    public void Dispose() => Cli.Dispose();
}

public class SpielCliTests(SpielCliFixture fixture) : IClassFixture<SpielCliFixture>
{
    private CliFixture Cli => fixture.Cli;

    /// <summary>Each targeted module's [out, in] in the fixture model (every linear layer: all-linear is the default target).</summary>
    private Dictionary<string, (int Out, int In)> ModuleShapes()
    {
        using var model = LlamaModel.Load(Cli.Model);
        return model.LinearLayers.ToDictionary(layer => layer.Name, layer => (layer.OutFeatures, layer.InFeatures));
    }

    private static Dictionary<string, int> NumDeltas(JsonObject config) =>
        config["num_deltas"]!.AsObject().ToDictionary(entry => entry.Key, entry => (int)entry.Value!);

    /// <summary>Every module's delta values and indices as the adapter file stores them.</summary>
    private static Dictionary<string, (float[] Values, int[] Indices)> ReadDeltas(string adapter, IEnumerable<string> modules)
    {
        using var file = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        return modules.ToDictionary(module => module, module =>
        {
            using var values = file.Load($"base_model.model.{module}.sft_delta.values");
            using var indices = file.Load($"base_model.model.{module}.sft_delta.indices");
            return (values.ToArray<float>(), indices.ToArray<int>());
        });
    }

    [Theory]
    [InlineData("spiel-ag", "rigl")]
    [InlineData("spiel-ma", "sm3")]
    public void TrainWritesAnSftAdapterWithTheBudgetAtEqualDensity(string method, string algorithm)
    {
        var run = fixture.Runs[method].Succeeded();
        string adapter = fixture.Adapter(method);
        var config = ReadConfig(adapter);
        Assert.Equal("SFT", (string?)config["peft_type"]);
        Assert.Equal(algorithm, (string?)config["selection_algorithm"]);
        Assert.Equal(4, (int?)config["reselection_steps"]);
        Assert.Equal(2, (int?)config["selection_accumulation_steps"]);
        Assert.Equal(Cli.Model, (string?)config["base_model_name_or_path"]);

        // Every module gets floor(64 · out·in / Σ out·in): q/k/v/o [16, 16] 4 each, gate/up [64, 16] and down [16, 64] 16 each.
        var shapes = ModuleShapes();
        long targetSize = shapes.Values.Sum(shape => (long)shape.Out * shape.In);
        var expectedCounts = shapes.ToDictionary(entry => entry.Key, entry => (int)(64L * entry.Value.Out * entry.Value.In / targetSize));
        var counts = NumDeltas(config);
        Assert.Equal(expectedCounts.OrderBy(entry => entry.Key, StringComparer.Ordinal), counts.OrderBy(entry => entry.Key, StringComparer.Ordinal));
        Assert.Equal(64, counts.Values.Sum());
        Assert.Equal(64, (long?)config["num_tunable_weights"]);
        Assert.Contains("SFT adapter (64 trained parameters) saved to", run.Stdout);

        var tensors = ReadTensors(adapter);
        Assert.Equal(
            (from module in shapes.Keys from tensor in new[] { "indices", "values" } select $"base_model.model.{module}.sft_delta.{tensor}").Order(StringComparer.Ordinal),
            tensors.Keys.Order(StringComparer.Ordinal));
        foreach (var (module, count) in counts)
        {
            var (valuesType, valuesShape) = tensors[$"base_model.model.{module}.sft_delta.values"];
            var (indicesType, indicesShape) = tensors[$"base_model.model.{module}.sft_delta.indices"];
            Assert.Equal(("F32", "I32"), (valuesType, indicesType));
            Assert.Equal([count], valuesShape);
            Assert.Equal([count], indicesShape);
        }
        foreach (var (module, (values, indices)) in ReadDeltas(adapter, counts.Keys))
        {
            var (rows, columns) = shapes[module];
            Assert.Equal(indices.Length, indices.Distinct().Count());
            Assert.All(indices, index => Assert.InRange(index, 0, rows * columns - 1));
            Assert.True(values.Any(value => value != 0), $"{module}: every delta is still 0 after 4 steps of training");
            Assert.All(values, value => Assert.True(float.IsFinite(value), $"{module}: delta {value}"));
        }

        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(adapter, "model.safetensors")), "an adapter run saves the adapter, not a full model");
        Assert.Equal([1, 2, 3, 4, 5, 6], MetricsLog.Read(Path.Combine(adapter, "metrics.csv")).Select(m => m.Step));
    }

    [Fact]
    public void EvalWithTheSftAdapterEqualsEvalOfTheMergedModel()
    {
        fixture.Merge.Succeeded();
        string adapter = fixture.Adapter("spiel-ag");
        double baseLoss = EvalLoss(Cli, Cli.Model);
        double adapted = EvalLoss(Cli, Cli.Model, adapter);
        double merged = EvalLoss(Cli, fixture.Merged);
        Assert.True(Math.Abs(adapted - baseLoss) > 1e-3, $"the trained adapter left the loss at {adapted:R} (base {baseLoss:R})");
        AssertRelativelyEqual(merged, adapted, 1e-5, "loss with --adapter vs the merged model");
        // The training run's final eval_loss ran the deltas unmerged (added around the GEMMs) on the same file.
        AssertRelativelyEqual(MetricsLog.Read(Path.Combine(adapter, "metrics.csv"))[^1].EvalLoss!.Value, adapted, 1e-5, "loss with --adapter vs unmerged in training");

        // The merged weights are the base ones plus each value at its index, and bit-identical everywhere else.
        var config = ReadConfig(adapter);
        var deltas = ReadDeltas(adapter, NumDeltas(config).Keys);
        using var baseFile = SafetensorsFile.Open(Path.Combine(Cli.Model, "model.safetensors"));
        using var mergedFile = SafetensorsFile.Open(Path.Combine(fixture.Merged, "model.safetensors"));
        foreach (var (module, (values, indices)) in deltas)
        {
            using var baseTensor = baseFile.Load($"{module}.weight");
            using var mergedTensor = mergedFile.Load($"{module}.weight");
            float[] before = baseTensor.ToArray<float>(), after = mergedTensor.ToArray<float>();
            var delta = indices.Zip(values).ToDictionary(pair => pair.First, pair => pair.Second);
            for (int index = 0; index < before.Length; index++)
            {
                if (delta.TryGetValue(index, out float value))
                {
                    Assert.True(after[index] == before[index] + value, $"{module}[{index}]: merged {after[index]:R}, base {before[index]:R} + delta {value:R}");
                }
                else
                {
                    Assert.True(after[index] == before[index], $"{module}[{index}]: merged {after[index]:R} but no delta there (base {before[index]:R})");
                }
            }
        }
        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
    }

    [Theory]
    [InlineData("spiel-ag")]
    [InlineData("spiel-ma")]
    public void ResumingAnExtendedRunInsideAWindowContinuesItExactly(string method)
    {
        // Windows are steps 1-2 and 5-6: the checkpoint after step 5 falls inside the second one, whose reselection (after
        // step 6, replacing a fraction 0.5 · (1 − 6/8) of each module's slots) only the 8-step run reaches.
        string[] flags = [.. SpielCliFixture.Flags, "--reselection-rate", "0.5", "--checkpoint-every", "5"];
        string uninterrupted = Path.Combine(Cli.Root, $"resume-{method}-uninterrupted"), resumed = Path.Combine(Cli.Root, $"resume-{method}");
        CliRun.Invoke(Train(Cli, uninterrupted, method, 8, flags)).Succeeded();
        CliRun.Invoke(Train(Cli, resumed, method, 5, flags)).Succeeded();
        if (method == "spiel-ag")
        {
            // The step-5 checkpoint holds the open window's candidates and sums, made from step 5's gradients.
            using var optimizer = SafetensorsFile.Open(Path.Combine(resumed, "checkpoint", "optimizer.safetensors"));
            Assert.Contains(optimizer.Names, name => name.EndsWith(".candidates", StringComparison.Ordinal));
            Assert.Contains(optimizer.Metadata, entry => entry.Key.EndsWith(".sample_count", StringComparison.Ordinal) && entry.Value == "1");
        }
        var resume = CliRun.Invoke(Train(Cli, resumed, method, 8, [.. flags, "--resume"])).Succeeded();

        Assert.Contains("at step 5 of 8", resume.Stderr);
        var expected = MetricsLog.Read(Path.Combine(uninterrupted, "metrics.csv"));
        var actual = MetricsLog.Read(Path.Combine(resumed, "metrics.csv"));
        Assert.Equal([1, 2, 3, 4, 5, 6, 7, 8], actual.Select(m => m.Step));
        Assert.Equal(expected.Select(m => (m.Step, m.Loss)), actual.Select(m => (m.Step, m.Loss)));
        foreach (string file in new[] { "adapter_model.safetensors", "adapter_config.json" })
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(uninterrupted, file)), File.ReadAllBytes(Path.Combine(resumed, file)));
        }
    }

    [Theory]
    [InlineData("spiel-ag", new[] { "--density must be in (0, 1] (got 0)" }, "--density", "0")]
    [InlineData("spiel-ag", new[] { "--delta-count must be at least 1 (got 0)" }, "--delta-count", "0")]
    [InlineData("spiel-ma", new[] { "--reselection-rate must be in [0, 1] (got 1.5)" }, "--reselection-rate", "1.5")]
    [InlineData("spiel-ma", new[] { "--reselection-policy must be one of linear, cosine (got step)" }, "--reselection-policy", "step")]
    [InlineData("spiel-ag", new[] { "accumulation steps (5)", "reselection interval (4)" }, "--reselection-interval", "4", "--accumulation-steps", "5")]
    [InlineData("spiel-ag", new[] { "--rank applies to --method lora or lora-sp or vblora, not spiel-ag" }, "--rank", "4")]
    [InlineData("lora", new[] { "--density applies to --method spiel-ag or spiel-ma, not lora" }, "--density", "0.1")]
    // q_proj [16, 16] would get 100000 · 256 / 4096 = 6250 deltas; 10 · 256 / 4096 rounds down to none.
    [InlineData("spiel-ag", new[] { "model.layers.0.self_attn.q_proj", "6250 deltas", "between 1 and 256" }, "--delta-count", "100000")]
    [InlineData("spiel-ma", new[] { "model.layers.0.self_attn.q_proj", "0 deltas", "between 1 and 256" }, "--delta-count", "10")]
    public void BadSpielFlagsExitWithOneLineNamingTheCulprit(string method, string[] expected, params string[] flags) =>
        AssertTrainingRefused(Cli, method, expected, flags);

    [Fact]
    public void InitAdapterContinuesAnSftAdapterWithItsOwnSettingsAndOnlyUnderItsMethod()
    {
        fixture.Runs["spiel-ag"].Succeeded();
        string original = fixture.Adapter("spiel-ag"), continued = Path.Combine(Cli.Root, "spiel-ag-continued");
        // Three steps: the file's windows (4, 2) reselect after step 2.
        CliRun.Invoke(Train(Cli, continued, "spiel-ag", 3, "--init-adapter", original, "--checkpoint-every", "0")).Succeeded();

        var originalConfig = ReadConfig(original);
        var config = ReadConfig(continued);
        foreach (string field in new[] { "peft_type", "selection_algorithm", "reselection_steps", "selection_accumulation_steps", "initial_reselection_rate", "num_tunable_weights" })
        {
            Assert.Equal(originalConfig[field]!.ToJsonString(), config[field]!.ToJsonString());
        }
        var counts = NumDeltas(config);
        Assert.Equal(NumDeltas(originalConfig).OrderBy(entry => entry.Key, StringComparer.Ordinal), counts.OrderBy(entry => entry.Key, StringComparer.Ordinal));

        // Same seed and data: both runs' first step sees the same batch, the original's with every delta 0 (the base model),
        // the continued one's with the file's deltas.
        double originalFirst = MetricsLog.Read(Path.Combine(original, "metrics.csv"))[0].Loss;
        double continuedFirst = MetricsLog.Read(Path.Combine(continued, "metrics.csv"))[0].Loss;
        Assert.True(Math.Abs(originalFirst - continuedFirst) > 1e-3, $"the continued run's first loss {continuedFirst:R} is the fresh run's {originalFirst:R}: the file's deltas were not loaded");

        // Continuing keeps what was learnt: the reselection after step 2 replaces at most the reselection rate's share of
        // each module's slots, not all of them as a fresh run's first reselection does.
        var before = ReadDeltas(original, counts.Keys);
        var after = ReadDeltas(continued, counts.Keys);
        foreach (var (module, count) in counts)
        {
            int kept = after[module].Indices.Intersect(before[module].Indices).Count();
            Assert.True(kept >= count - Math.Ceiling(0.2 * count), $"{module}: only {kept} of {count} positions kept after continuing");
        }

        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "spiel-ag", 1, "--init-adapter", original, "--delta-count", "32"))
            .FailedWithOneLine("--delta-count", "settings in its config");
        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "spiel-ma", 1, "--init-adapter", original))
            .FailedWithOneLine(original, "a spiel-ag adapter", "not spiel-ma", "--method spiel-ag");
        CliRun.Invoke(Train(Cli, Path.Combine(Cli.Root, "never"), "full", 1, "--init-adapter", original)).FailedWithOneLine("--init-adapter", "only adapter methods", "spiel-ag");
        Assert.Equal(fixture.BaseWeightsHash, Hash(Path.Combine(Cli.Model, "model.safetensors")));
    }
}
