using Engine.Autograd;
using Engine.Model;
using Engine.Peft;
using Engine.Peft.Lora;
using Engine.Peft.VbLora;
using Engine.Tests.Support;
using Engine.Tests.Training;
using Engine.Training;

namespace Engine.Tests.Peft;

public class AdapterTests
{
    /// <summary>Dimensions divisible by 8 (VB-LoRA's vector length here): hidden 32, intermediate 48, key/value width 16.</summary>
    internal static readonly LlamaConfig Config = new()
    {
        VocabSize = 31, HiddenSize = 32, IntermediateSize = 48, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 16,
    };

    internal static readonly List<Engine.Training.Data.Batch> Batches = ListBatchSource.Random(4, 2, 8, Config.VocabSize, seed: 11);

    internal static TrainingOptions Options(int steps, string? output = null) => new()
    {
        MaxSteps = steps, LearningRate = 1e-2, WarmupSteps = 0, MaxGradNorm = 0, CheckpointEvery = output is null ? 0 : 2, OutputDirectory = output,
    };

    internal static LoraOptions Lora(LoraSparsityOptions? sparsity = null, double dropout = 0) =>
        new() { Rank = 4, Alpha = 8, Seed = 7, Sparsity = sparsity, Dropout = dropout };

    private static VbLoraOptions VbLora => new() { Rank = 2, VectorCount = 6, VectorLength = 8, TopK = 2, LogitsInitStd = 1, BankInitBound = 0.3, Seed = 5 };

    [Fact]
    public void TargetSelectionFollowsPeftsRules()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        Assert.Equal(14, TargetModules.AllLinear.Resolve(model).Count);
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            TargetModules.FromNames("q_proj", "v_proj").Resolve(model));
        Assert.Equal(["model.layers.1.mlp.down_proj"], TargetModules.FromNames("layers.1.mlp.down_proj").Resolve(model));
        Assert.Equal(["model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj"], TargetModules.FromPattern(@".*\.0\.mlp\.(gate|up)_proj").Resolve(model));
        // A regex must match the whole path: "q_proj" alone as a pattern matches nothing.
        Assert.Throws<ArgumentException>(() => TargetModules.FromPattern("q_proj").Resolve(model));
        Assert.Equal(["model.layers.1.self_attn.k_proj"], TargetModules.FromNames("k_proj").WithLayers([1]).Resolve(model));
        Assert.Equal(TargetModules.AllLinear.Resolve(model), TargetModules.Parse("all-linear").Resolve(model));
        Assert.Equal(2, TargetModules.Parse("regex:.*o_proj").Resolve(model).Count);
    }

    [Fact]
    public void LoraStartsAsANoOpAndTrainsOnlyTheAdapter()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var ids = Tensor.FromArray(Batches[0].InputIds, Batches[0].BatchSize, Batches[0].SequenceLength);
        double[] before;
        using (GradMode.NoGrad())
        {
            before = model.Forward(ids).Data.ToArray<float>().Select(v => (double)v).ToArray();
        }
        var baseValues = model.Parameters.ToDictionary(p => p.Name, p => p.Data.ToArray<float>());
        var method = AdapterTraining.Fresh("lora", () => new LoraAdapter(Lora()));
        using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(steps: 5));
        var adapter = (LoraAdapter)method.Adapter;
        using (GradMode.NoGrad())
        {
            // B = 0 at init: the adapted model computes exactly what the base did.
            Assert.Equal(before, model.Forward(ids).Data.ToArray<float>().Select(v => (double)v).ToArray());
        }
        var history = trainer.Train();
        Assert.True(history[^1].Loss < history[0].Loss, $"loss {history[0].Loss} -> {history[^1].Loss}");
        Assert.All(model.Parameters, p => Assert.Equal(baseValues[p.Name], p.Data.ToArray<float>()));
        Assert.All(model.Parameters, p => Assert.False(p.Trainable));
        long adapterEntries = adapter.LoraModules.Sum(m => 4L * (m.InFeatures + m.OutFeatures));
        Assert.Equal(adapterEntries, adapter.TrainableParameterCount);
        Assert.Equal(adapterEntries, (long)adapter.StoredParameterCount);
        // Moments exist for the adapter only (two float32 tensors per entry), none for the frozen base.
        Assert.Equal(2 * 4 * adapterEntries, trainer.Optimizer.StateBytes);
    }

    [Fact]
    public void LoraScaleAndInitFollowTheSpec()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        using var adapter = new LoraAdapter(new LoraOptions { Rank = 4, Alpha = 8, UseRsLora = true, Targets = TargetModules.FromNames("down_proj") });
        adapter.Attach(model);
        var module = adapter.LoraModules[0];
        Assert.Equal(8 / Math.Sqrt(4), module.Scale, 12);
        using var a = module.A.Value();
        using var b = module.B.Value();
        double bound = 1 / Math.Sqrt(Config.IntermediateSize);
        var values = a.ToArray<float>();
        Assert.All(values, v => Assert.InRange(v, -bound, bound));
        Assert.True(values.Max() > 0.8 * bound && values.Min() < -0.8 * bound, "A should fill its kaiming-uniform range");
        Assert.All(b.ToArray<float>(), v => Assert.Equal(0f, v));
    }

    [Theory]
    [InlineData(FreezeGranularity.Element)]
    [InlineData(FreezeGranularity.Row)]
    public void LoraSpKeepsFrozenEntriesAndStoresMomentsForTrainableOnesOnly(FreezeGranularity granularity)
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var method = AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(new LoraSparsityOptions { Granularity = granularity })));
        using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(steps: 4));
        var adapter = (LoraAdapter)method.Adapter;
        var initialA = adapter.LoraModules.Select(m => m.A.Value().ToArray<float>()).ToList();
        var history = trainer.Train();
        Assert.True(history[^1].Loss < history[0].Loss, $"loss {history[0].Loss} -> {history[^1].Loss}");

        long total = adapter.LoraModules.Sum(m => 4L * (m.InFeatures + m.OutFeatures));
        Assert.Equal(total / 2, adapter.TrainableParameterCount);
        Assert.Equal(2 * 4 * (total / 2), trainer.Optimizer.StateBytes);
        for (int index = 0; index < adapter.LoraModules.Count; index++)
        {
            var module = adapter.LoraModules[index];
            var splitA = (SplitFactor)module.A;
            var trainable = splitA.Indices.ToArray<int>().ToHashSet();
            var after = module.A.Value().ToArray<float>();
            int changed = 0;
            for (int entry = 0; entry < after.Length; entry++)
            {
                if (trainable.Contains(entry))
                {
                    changed += after[entry] != initialA[index][entry] ? 1 : 0;
                }
                else
                {
                    Assert.Equal(initialA[index][entry], after[entry]);
                }
            }
            Assert.True(changed > trainable.Count / 2, $"{module.Name}: only {changed} of {trainable.Count} trainable entries of A moved");
            if (granularity == FreezeGranularity.Row)
            {
                // Whole rank components train or stay frozen together: rows of A and the same columns of B.
                var rows = trainable.Select(entry => entry / module.InFeatures).Distinct().Order().ToList();
                Assert.Equal(2, rows.Count);
                Assert.Equal(2 * module.InFeatures, trainable.Count);
                var columns = ((SplitFactor)module.B).Indices.ToArray<int>().Select(entry => entry % 4).Distinct().Order().ToList();
                Assert.Equal(rows, columns);
            }
        }
    }

    /// <summary>
    /// With rank-component masks drawn once, frozen components have B columns of zero and the layer runs at the live rank
    /// only: the same losses as composing the full A and B (to float rounding: the GEMMs' inner size differs).
    /// </summary>
    [Fact]
    public void LoraSpRowMasksRunAtTheLiveRankWithTheSameResult()
    {
        IReadOnlyList<StepMetrics> Run(bool compact)
        {
            using var model = LlamaModel.CreateRandom(Config, seed: 1);
            var method = AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(new LoraSparsityOptions { Granularity = FreezeGranularity.Row })));
            using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(steps: 4));
            foreach (var module in ((LoraAdapter)method.Adapter).LoraModules)
            {
                module.CompactRankComponents = compact;
                Assert.Equal(compact, module.SkipsFrozenComponents);
            }
            return trainer.Train();
        }
        var compact = Run(compact: true);
        var full = Run(compact: false);
        Assertions.Close(full.Select(m => m.Loss).ToArray(), compact.Select(m => m.Loss).ToArray(), 1e-6, "losses");
    }

    [Fact]
    public void LoraSpRedrawsResumeExactly()
    {
        var sparsity = new LoraSparsityOptions { RedrawEvery = 2 };
        using var uninterruptedDirectory = new TemporaryDirectory();
        IReadOnlyList<StepMetrics> uninterrupted;
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity, dropout: 0.1))), new ListBatchSource(Batches), Options(6, uninterruptedDirectory.Path)))
        {
            uninterrupted = trainer.Train();
        }
        using var resumedDirectory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity, dropout: 0.1))), new ListBatchSource(Batches), Options(6, resumedDirectory.Path)))
        {
            // Stop after the step-4 checkpoint, as if the process had been killed; step 5 then redraws the masks.
            using var cancellation = new CancellationTokenSource();
            trainer.StepCompleted += metrics => { if (metrics.Step == 4) cancellation.Cancel(); };
            trainer.Train(cancellation.Token);
        }
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var trainer = new Trainer(model, AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(sparsity, dropout: 0.1))), new ListBatchSource(Batches), Options(6, resumedDirectory.Path)))
        {
            Assert.True(trainer.TryResume());
            Assert.Equal(4, trainer.CompletedSteps);
            var resumed = trainer.Train();
            Assert.Equal(uninterrupted.Skip(4).Select(m => m.Loss), resumed.Select(m => m.Loss));
        }
    }

    [Fact]
    public void VbLoraTrainsTheBankAndLogitsAtTheirOwnRates()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var method = AdapterTraining.Fresh("vblora", () => new VbLoraAdapter(VbLora with { BankLearningRate = 1e-2, LogitsLearningRate = 5e-2 }));
        using var trainer = new Trainer(model, method, new ListBatchSource(Batches), Options(steps: 6));
        var adapter = (VbLoraAdapter)method.Adapter;
        Assert.Equal([("vblora_vector_bank", 1e-2, 0.0), ("vblora_logits", 5e-2, 0.0)],
            trainer.Optimizer.Groups.Select(g => (g.Name, g.LearningRate, g.WeightDecay)).ToList());
        // One bank, shared: every module holds the same parameter object.
        var bankBefore = adapter.Bank.Data.ToArray<float>();
        var history = trainer.Train();
        Assert.True(history[^1].Loss < history[0].Loss, $"loss {history[0].Loss} -> {history[^1].Loss}");
        Assert.NotEqual(bankBefore, adapter.Bank.Data.ToArray<float>());
        Assert.All(model.Parameters, p => Assert.Null(p.Grad));
        // 14 modules: per layer q/o 2·(4+4), k/v 2·(4+2), gate/up 2·(4+6), down 2·(6+4) sub-vectors.
        long subVectors = 2 * (2 * 16 + 2 * 12 + 2 * 20 + 20);
        Assert.Equal(6 * 8 + subVectors * 6, adapter.StoredParameterCount);
        Assert.Equal(6 * 8 + subVectors * 6, adapter.TrainableParameterCount);
    }

    /// <summary>vb-lora.md's check: RoBERTa-large, N=90, L=256, r=4, k=2, U8 indices: 23,040 + 6,912 + 3,456 = 33,408.</summary>
    [Fact]
    public void StoredParameterCountReproducesThePapersExample()
    {
        var perLayer = new[] { (1024, 1024), (1024, 1024), (1024, 1024), (1024, 1024), (4096, 1024), (1024, 4096) };
        var shapes = Enumerable.Repeat(perLayer, 24).SelectMany(layer => layer).ToList();
        var options = new VbLoraOptions { VectorCount = 90, VectorLength = 256, Rank = 4, TopK = 2, SaveOnlyTopKWeights = true };
        Assert.Equal("U8", options.IndexDType);
        Assert.Equal(33_408, VbLoraAdapter.StoredParameters(shapes, options));
        Assert.Equal(23_040 + 6_912 * 90, VbLoraAdapter.StoredParameters(shapes, options with { SaveOnlyTopKWeights = false }));
        Assert.Equal("I16", (options with { VectorCount = 256 }).IndexDType);
        Assert.Equal("I32", (options with { VectorCount = 1 << 15 }).IndexDType);
    }

    [Theory]
    [InlineData(6)]
    [InlineData(300)]
    public void VbLoraSavesTopKAndReloadsForInference(int vectorCount)
    {
        using var directory = new TemporaryDirectory();
        using var scope = new TensorScope();
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var ids = Tensor.FromArray(Batches[0].InputIds, Batches[0].BatchSize, Batches[0].SequenceLength);
        float[] expected;
        using (var adapter = new VbLoraAdapter(VbLora with { VectorCount = vectorCount, SaveOnlyTopKWeights = true }))
        {
            adapter.Attach(model);
            using (GradMode.NoGrad())
            {
                expected = model.Forward(ids).Data.ToArray<float>();
            }
            adapter.Save(directory.Path);
        }
        using var reloaded = (VbLoraAdapter)AdapterFiles.Load(directory.Path, model);
        Assert.True(reloaded.IsTopKOnly);
        using var file = Engine.IO.SafetensorsFile.Open(Path.Combine(directory.Path, AdapterFiles.WeightsFileName));
        Assert.Equal(vectorCount < 256 ? "U8" : "I16", file.Entry("base_model.model.model.layers.0.self_attn.q_proj.vblora_logits_A_topk_indices").DTypeName);
        using (GradMode.NoGrad())
        {
            Assertions.Close(expected.Select(v => (double)v).ToArray(), model.Forward(ids).Data.ToArray<float>().Select(v => (double)v).ToArray(), 1e-6, "logits");
        }
    }

    [Fact]
    public void MergeRefusesANonFiniteResultAndLeavesTheWeight()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        using var adapter = new LoraAdapter(Lora() with { Targets = TargetModules.FromNames("layers.0.self_attn.q_proj") });
        adapter.Attach(model);
        var module = adapter.LoraModules[0];
        module.B.SetValue(Tensor.Full([Config.HiddenSize, 4], float.MaxValue));
        var weight = module.Weight.Data.ToArray<float>();
        var error = Assert.Throws<InvalidOperationException>(adapter.Merge);
        Assert.Contains("model.layers.0.self_attn.q_proj", error.Message);
        Assert.Contains("non-finite", error.Message);
        Assert.Equal(weight, module.Weight.Data.ToArray<float>());
        Assert.False(module.IsMerged);
    }

    [Fact]
    public void BadSettingsAreClearErrors()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        Assert.Contains("rank must be at least 1, got 0", Assert.Throws<ArgumentException>(() => new LoraAdapter(new LoraOptions { Rank = 0 })).Message);

        var tooHigh = Assert.Throws<ArgumentException>(() => new LoraAdapter(new LoraOptions { Rank = 17 }).Attach(model)).Message;
        Assert.Contains("rank 17", tooHigh);
        Assert.Contains("min(in, out) = 16", tooHigh);
        Assert.Contains("model.layers.0.self_attn.k_proj", tooHigh);

        var indivisible = Assert.Throws<ArgumentException>(() => new VbLoraAdapter(VbLora with { VectorLength = 12 }).Attach(model)).Message;
        Assert.Contains("vector length 12", indivisible);
        Assert.Contains("model.layers.0.self_attn.q_proj [out 32, in 32]", indivisible);

        Assert.Contains("between 1 and the number of vectors 6, got 7", Assert.Throws<ArgumentException>(() => new VbLoraAdapter(VbLora with { TopK = 7 })).Message);

        var unknown = Assert.Throws<ArgumentException>(() => new LoraAdapter(new LoraOptions { Targets = TargetModules.FromNames("q_proj", "qkv_proj") }).Attach(model)).Message;
        Assert.Contains("'qkv_proj' matches no linear layer", unknown);
        Assert.Contains("q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj", unknown);

        // A failed attach leaves the model as it was: no layer wrapped, base still trainable.
        Assert.All(model.LinearLayers, layer => Assert.IsType<Linear>(layer));
        Assert.All(model.Parameters, p => Assert.True(p.Trainable));
    }

    [Fact]
    public void AnAdapterForAnotherModelIsRejectedNamingTheTensorAndShapes()
    {
        using var directory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(Config, seed: 1))
        using (var adapter = new LoraAdapter(Lora()))
        {
            adapter.Attach(model);
            adapter.Save(directory.Path);
        }
        using var wider = LlamaModel.CreateRandom(Config with { IntermediateSize = 64 }, seed: 1);
        wider.Parameters[0].Trainable = false;
        var error = Assert.Throws<InvalidDataException>(() => AdapterFiles.Load(directory.Path, wider)).Message;
        Assert.Contains("base_model.model.model.layers.0.mlp.gate_proj.lora_B.weight", error);
        Assert.Contains("[48, 4]", error);
        Assert.Contains("[64, 4]", error);
        // The failed load leaves the model as it was: plain layers, and each parameter's trainability.
        Assert.All(wider.LinearLayers, layer => Assert.IsType<Linear>(layer));
        Assert.False(wider.Parameters[0].Trainable);
        Assert.All(wider.Parameters.Skip(1), p => Assert.True(p.Trainable, $"{p.Name} left frozen"));

        File.WriteAllText(Path.Combine(directory.Path, AdapterFiles.ConfigFileName), """{"peft_type": "IA3", "target_modules": ["q_proj"]}""");
        Assert.Contains("peft_type 'IA3' is not supported", Assert.Throws<InvalidDataException>(() => AdapterFiles.Load(directory.Path, wider)).Message);
        File.WriteAllText(Path.Combine(directory.Path, AdapterFiles.ConfigFileName), """{"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "use_dora": true}""");
        Assert.Contains("use_dora = true is not supported", Assert.Throws<InvalidDataException>(() => AdapterFiles.Load(directory.Path, wider)).Message);
    }
}
