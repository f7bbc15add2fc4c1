using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Model;
using Engine.Peft;
using Engine.Peft.Lora;
using Engine.Peft.VbLora;
using Engine.Tests.Support;
using Engine.Tests.Training;
using Engine.Training;
using static Engine.Tests.Peft.AdapterTests;

namespace Engine.Tests.Peft;

/// <summary>Regression tests for defects a review found (resume, failed loads, merges, file validation).</summary>
public class AdapterRobustnessTests
{
    /// <summary>Row masks with redraws: after a resume the frozen components may be non-zero, so the live-rank shortcut must be off.</summary>
    [Fact]
    public void LoraSpRowRedrawsResumeExactly()
    {
        var sparsity = new LoraSparsityOptions { RedrawEvery = 3, Granularity = FreezeGranularity.Row };
        using var uninterruptedDirectory = new TemporaryDirectory();
        IReadOnlyList<StepMetrics> uninterrupted;
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity))), new ListBatchSource(Batches), Options(6, uninterruptedDirectory.Path)))
        {
            uninterrupted = trainer.Train();
        }
        using var resumedDirectory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity))), new ListBatchSource(Batches), Options(6, resumedDirectory.Path)))
        {
            using var cancellation = new CancellationTokenSource();
            trainer.StepCompleted += metrics => { if (metrics.Step == 4) cancellation.Cancel(); };
            trainer.Train(cancellation.Token);
        }
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        {
            var method = AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity)));
            using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(6, resumedDirectory.Path));
            Assert.True(trainer.TryResume());
            Assert.Contains(((LoraAdapter)method.Adapter).LoraModules, module => !module.SkipsFrozenComponents);
            Assert.Equal(uninterrupted.Skip(4).Select(m => m.Loss), trainer.Train().Select(m => m.Loss));
        }
    }

    /// <summary>A checkpoint made with other adapter settings (same parameter shapes) or another seed is refused before anything is restored.</summary>
    [Fact]
    public void ResumeWithOtherSettingsIsRefused()
    {
        using var directory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(new LoraSparsityOptions()))), new ListBatchSource(Batches), Options(2, directory.Path)))
        {
            trainer.Train();
        }
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        {
            var method = AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(new LoraSparsityOptions { Granularity = FreezeGranularity.Row })));
            using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(4, directory.Path));
            var error = Assert.Throws<InvalidDataException>(() => trainer.TryResume());
            Assert.Contains("other 'lora-sp' settings", error.Message);
            Assert.Contains("\"lora_sp_granularity\":\"element\"", error.Message);
        }
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        {
            var method = AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(new LoraSparsityOptions())));
            using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(4, directory.Path) with { Seed = 9 });
            Assert.Contains("seed 0, this run has seed 9", Assert.Throws<InvalidDataException>(() => trainer.TryResume()).Message);
        }
    }

    [Fact]
    public void RegexTargetsCannotBeCombinedWithLayers()
    {
        var error = Assert.Throws<ArgumentException>(() => TargetModules.Parse("regex:.*q_proj").WithLayers([1]));
        Assert.Contains("regex '.*q_proj'", error.Message);
    }

    /// <summary>Merge checks every module before changing any weight.</summary>
    [Fact]
    public void AFailedMergeChangesNoWeight()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        using var adapter = new LoraAdapter(Lora() with { Targets = TargetModules.FromNames("layers.0.self_attn.q_proj", "layers.1.self_attn.q_proj") });
        adapter.Attach(model);
        adapter.LoraModules[0].B.SetValue(Tensor.Full([Config.HiddenSize, 4], 0.5f));
        adapter.LoraModules[1].B.SetValue(Tensor.Full([Config.HiddenSize, 4], float.MaxValue));
        var weights = adapter.LoraModules.Select(m => m.Weight.Data.ToArray<float>()).ToList();
        Assert.Throws<InvalidOperationException>(adapter.Merge);
        Assert.All(adapter.LoraModules, module => Assert.False(module.IsMerged));
        Assert.Equal(weights, adapter.LoraModules.Select(m => m.Weight.Data.ToArray<float>()).ToList());
        Assert.Throws<InvalidOperationException>(adapter.MergeAndUnload);
        Assert.All(model.LinearLayers.Where(layer => layer.Name.EndsWith("q_proj")), layer => Assert.IsType<LoraLinear>(layer));
    }

    [Theory]
    [InlineData(7.5f, "not a set of softmax weights")]
    [InlineData(float.NaN, "not a set of softmax weights")]
    [InlineData(-0.25f, "not a set of softmax weights")]
    public void TopKFilesWithImpossibleWeightsAreRejected(float weight, string expected)
    {
        using var directory = new TemporaryDirectory();
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var options = new VbLoraOptions { Rank = 2, VectorCount = 6, VectorLength = 8, TopK = 2, LogitsInitStd = 1, BankInitBound = 0.3, Seed = 5, SaveOnlyTopKWeights = true };
        using (var adapter = new VbLoraAdapter(options))
        {
            adapter.Attach(model);
            adapter.Save(directory.Path);
        }
        string path = Path.Combine(directory.Path, AdapterFiles.WeightsFileName);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var narrowed = new Dictionary<string, string>();
        using (var file = Engine.IO.SafetensorsFile.Open(path))
        {
            foreach (var name in file.Names)
            {
                var tensor = name.EndsWith("_topk_indices") ? file.Load(name, DType.Int32) : file.Load(name, DType.Float32);
                if (name.EndsWith("_topk_weights"))
                {
                    tensor = Tensor.Full(tensor.ShapeArray(), weight);
                }
                if (name.EndsWith("_topk_indices"))
                {
                    narrowed[name] = "U8";
                }
                tensors.Add(new(name, tensor));
            }
        }
        Engine.IO.SafetensorsWriter.Write(path, tensors, null, narrowed);
        var error = Assert.Throws<InvalidDataException>(() => AdapterFiles.Load(directory.Path, model));
        Assert.Contains(expected, error.Message);
        Assert.Contains("_topk_weights' row 0", error.Message);
    }

    [Fact]
    public void TopKOneRoundTrips()
    {
        using var directory = new TemporaryDirectory();
        using var scope = new TensorScope();
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var ids = Tensor.FromArray(Batches[0].InputIds, Batches[0].BatchSize, Batches[0].SequenceLength);
        var options = new VbLoraOptions { Rank = 2, VectorCount = 6, VectorLength = 8, TopK = 1, LogitsInitStd = 1, BankInitBound = 0.3, Seed = 5, SaveOnlyTopKWeights = true };
        float[] expected;
        using (var adapter = new VbLoraAdapter(options))
        {
            adapter.Attach(model);
            using (GradMode.NoGrad())
            {
                expected = model.Forward(ids).Data.ToArray<float>();
            }
            adapter.Save(directory.Path);
        }
        using var reloaded = AdapterFiles.Load(directory.Path, model);
        using (GradMode.NoGrad())
        {
            Assert.Equal(expected, model.Forward(ids).Data.ToArray<float>());
        }
    }

    [Theory]
    [InlineData("""{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj", 3]}""", "field 'target_modules' must list strings, found 3")]
    [InlineData("""{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "layers_pattern": ["layers"]}""", "layers_pattern = [\"layers\"] is not supported")]
    [InlineData("""{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "layers_to_transform": [0, "1"]}""", "field 'layers_to_transform' must list integers, found \"1\"")]
    [InlineData("""{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "init_lora_weights": "pissa"}""", "init_lora_weights = \"pissa\" is not supported")]
    [InlineData("""{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "lora_sp_frozen_fraction": 0.5, "lora_sp_granularity": "5"}""", "field 'lora_sp_granularity' must be one of element, row")]
    public void BadConfigFieldsAreNamed(string config, string expected)
    {
        using var directory = new TemporaryDirectory();
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        using (var adapter = new LoraAdapter(Lora()))
        {
            adapter.Attach(model);
            adapter.Save(directory.Path);
        }
        using var fresh = LlamaModel.CreateRandom(Config, seed: 1);
        File.WriteAllText(Path.Combine(directory.Path, AdapterFiles.ConfigFileName), config);
        var error = Assert.Throws<InvalidDataException>(() => AdapterFiles.Load(directory.Path, fresh));
        Assert.Contains(AdapterFiles.ConfigFileName, error.Message);
        Assert.Contains(expected, error.Message);
    }
}
