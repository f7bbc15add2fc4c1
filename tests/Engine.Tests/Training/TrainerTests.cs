using System.Text.Json;
using Engine.Autograd;
using Engine.Model;
using Engine.Tests.Support;
using Engine.Training;
using Engine.Training.Data;
using Engine.Training.Optimization;

namespace Engine.Tests.Training;

public class TrainerTests
{
    private static readonly LlamaConfig Config = new()
    {
        VocabSize = 29, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 16,
    };

    private static TrainingOptions Options(string? output, int steps = 6) => new()
    {
        MaxSteps = steps, LearningRate = 3e-3, WarmupSteps = 2, WeightDecay = 0.01, GradientAccumulation = 2, CheckpointEvery = output is null ? 0 : 3, OutputDirectory = output,
    };

    [Fact]
    public void ResumingReproducesTheUninterruptedRun()
    {
        var batches = ListBatchSource.Random(5, 2, 8, Config.VocabSize, seed: 1);
        using var uninterruptedDirectory = new TemporaryDirectory();
        IReadOnlyList<StepMetrics> uninterrupted;
        float[] finalWeights;
        using (var model = LlamaModel.CreateRandom(Config, seed: 3))
        using (var trainer = new Trainer(model, new FullFineTuning(), new ListBatchSource(batches), Options(uninterruptedDirectory.Path)))
        {
            uninterrupted = trainer.Train();
            finalWeights = model.Parameters[3].Data.ToArray<float>();
        }

        using var resumedDirectory = new TemporaryDirectory();
        using (var model = LlamaModel.CreateRandom(Config, seed: 3))
        using (var trainer = new Trainer(model, new FullFineTuning(), new ListBatchSource(batches), Options(resumedDirectory.Path, steps: 6)))
        {
            // Stop after the step-3 checkpoint, as if the process had been killed.
            using var cancellation = new CancellationTokenSource();
            trainer.StepCompleted += metrics => { if (metrics.Step == 4) cancellation.Cancel(); };
            trainer.Train(cancellation.Token);
        }
        using (var model = LlamaModel.CreateRandom(Config, seed: 99))
        using (var trainer = new Trainer(model, new FullFineTuning(), new ListBatchSource(batches), Options(resumedDirectory.Path)))
        {
            Assert.True(trainer.TryResume());
            Assert.Equal(3, trainer.CompletedSteps);
            var resumed = trainer.Train();
            Assert.Equal(uninterrupted.Skip(3).Select(m => m.Loss), resumed.Select(m => m.Loss));
            Assert.Equal(finalWeights, model.Parameters[3].Data.ToArray<float>());
        }
        // metrics.csv of the resumed run has each step once, with the same losses.
        var logged = MetricsLog.Read(Path.Combine(resumedDirectory.Path, "metrics.csv"));
        Assert.Equal(Enumerable.Range(1, 6), logged.Select(m => m.Step));
        Assert.Equal(uninterrupted.Select(m => m.Loss), logged.Select(m => m.Loss));
    }

    /// <summary>Poisons a weight with NaN before a chosen step: the stand-in for a diverging run.</summary>
    private sealed class PoisoningMethod(int poisonStep) : ITrainingMethod
    {
        private readonly FullFineTuning inner = new();
        private LlamaModel? model;

        public string Name => "full";

        public IReadOnlyList<Parameter> StateParameters => inner.StateParameters;

        public IReadOnlyList<ParameterGroup> Attach(LlamaModel attached, TrainingOptions options)
        {
            model = attached;
            return inner.Attach(attached, options);
        }

        public IReadOnlyList<Parameter> BeforeStep(int step)
        {
            if (step == poisonStep)
            {
                model!.FinalNorm.Data.CopyFrom(Tensor.Full(model.FinalNorm.Shape, double.NaN));
            }
            return [];
        }

        public void SaveResult(LlamaModel saved, string directory) => inner.SaveResult(saved, directory);
    }

    [Fact]
    public void NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint()
    {
        using var directory = new TemporaryDirectory();
        using var model = LlamaModel.CreateRandom(Config, seed: 3);
        var options = Options(directory.Path, steps: 10) with { CheckpointEvery = 2 };
        using var trainer = new Trainer(model, new PoisoningMethod(poisonStep: 5), new ListBatchSource(ListBatchSource.Random(3, 2, 8, Config.VocabSize, 2)), options);
        var error = Assert.Throws<TrainingDivergedException>(() => trainer.Train());
        Assert.Contains("step 5", error.Message);
        Assert.Contains("NaN", error.Message);
        string checkpoint = Path.Combine(directory.Path, "checkpoint");
        Assert.Contains(checkpoint, error.Message);
        var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(checkpoint, "state.json"))).RootElement;
        Assert.Equal(4, state.GetProperty("Step").GetInt32());
        Assert.Equal(4, trainer.CompletedSteps);
    }

    [Fact]
    public void AccumulatingTwoHalvesEqualsOneFullBatch()
    {
        var halves = ListBatchSource.Random(2, 2, 8, Config.VocabSize, seed: 4);
        var whole = new Batch([.. halves[0].InputIds, .. halves[1].InputIds], [.. halves[0].Labels, .. halves[1].Labels], [.. halves[0].Targets, .. halves[1].Targets], 4, 8, Epoch: 0);
        float[] Gradient(IEnumerable<Batch> micro, int accumulation)
        {
            using var model = LlamaModel.CreateRandom(Config, seed: 8);
            var options = new TrainingOptions { MaxSteps = 1, GradientAccumulation = accumulation, LearningRate = 1e-2, Schedule = ScheduleKind.Constant, MaxGradNorm = 0 };
            using var trainer = new Trainer(model, new FullFineTuning(), new ListBatchSource(micro.ToList()), options);
            var before = model.Parameters[1].Data.ToArray<float>();
            trainer.Train();
            // With Adam's first step the update is lr·sign-like, so compare the accumulated first moments instead: m = (1 − β1)·g.
            return before.Zip(model.Parameters[1].Data.ToArray<float>(), (b, a) => b - a).ToArray();
        }
        // Equal token counts per half, so the mean of the halves' mean losses is the full batch's mean loss.
        Assert.Equal(halves[0].TargetCount, halves[1].TargetCount);
        var accumulated = Gradient(halves, 2);
        var single = Gradient([whole], 1);
        Assertions.Close(single.Select(v => (double)v).ToArray(), accumulated.Select(v => (double)v).ToArray(), 1e-3, "update with accumulation vs one batch");
    }

    [Fact]
    public void AdamWMatchesTorchOptimAdamW()
    {
        var fixture = JsonDocument.Parse(File.ReadAllText(Path.Combine(RepositoryPaths.Fixture("adamw"), "adamw.json"))).RootElement;
        var settings = fixture.GetProperty("settings");
        double[] Array(JsonElement element) => element.EnumerateArray().Select(v => v.GetDouble()).ToArray();
        using var scope = new TensorScope();
        var initial = Array(fixture.GetProperty("initial"));
        using var parameter = new Parameter(Tensor.FromArray<double>(initial, [initial.Length]), "p");
        var betas = Array(settings.GetProperty("betas"));
        using var optimizer = new AdamW([new ParameterGroup("all", [parameter], settings.GetProperty("lr").GetDouble(), settings.GetProperty("weight_decay").GetDouble())],
            new AdamWOptions { Beta1 = betas[0], Beta2 = betas[1], Epsilon = settings.GetProperty("eps").GetDouble() });
        var gradients = fixture.GetProperty("gradients").EnumerateArray().Select(Array).ToArray();
        var expected = fixture.GetProperty("after").EnumerateArray().Select(Array).ToArray();
        for (int step = 0; step < gradients.Length; step++)
        {
            using (TensorScope.Untracked())
            {
                parameter.Grad = Tensor.FromArray<double>(gradients[step], [initial.Length]);
            }
            optimizer.Step(1.0);
            parameter.ClearGrad();
            // float64 on both sides: only operation order differs.
            Assertions.Close(expected[step], parameter.Data.ToArray<double>(), 1e-12, $"AdamW step {step + 1}");
        }
    }

    [Fact]
    public void SchedulesFollowHuggingFace()
    {
        var linear = new LearningRateSchedule(ScheduleKind.Linear, WarmupSteps: 10, TotalSteps: 110);
        Assert.Equal(0.0, linear.Multiplier(0));
        Assert.Equal(0.5, linear.Multiplier(5));
        Assert.Equal(1.0, linear.Multiplier(10));
        Assert.Equal(0.5, linear.Multiplier(60), 12);
        Assert.Equal(0.0, linear.Multiplier(110));
        var cosine = new LearningRateSchedule(ScheduleKind.Cosine, 0, 100);
        Assert.Equal(1.0, cosine.Multiplier(0));
        Assert.Equal(0.5, cosine.Multiplier(50), 12);
        Assert.Equal(0.0, cosine.Multiplier(100), 12);
        Assert.Equal(1.0, new LearningRateSchedule(ScheduleKind.Constant, 0, 5).Multiplier(4));
    }

    [Fact]
    public void ClippingScalesToTheMaximumNorm()
    {
        using var scope = new TensorScope();
        using var first = new Parameter(Tensor.Zeros([2]), "a");
        using var second = new Parameter(Tensor.Zeros([1]), "b");
        using (TensorScope.Untracked())
        {
            first.Grad = Tensor.FromArray([3f, 0f], 2);
            second.Grad = Tensor.FromArray([4f], 1);
        }
        double norm = GradientClipping.ClipGlobalNorm([first, second], maxNorm: 1.0);
        Assert.Equal(5.0, norm, 6);
        Assert.Equal([0.6f, 0f], first.Grad!.ToArray<float>().Select(v => MathF.Round(v, 5)));
        Assert.Equal(0.8f, second.Grad!.ToArray<float>()[0], 5);
    }
}
