using Engine.Autograd;
using Engine.Model;
using Engine.Peft.Lora;
using Engine.Tests.Support;
using Engine.Training;
using Engine.Training.Data;
using Engine.Training.Ist;

namespace Engine.Tests.Training;

public class IstTests
{
    private static readonly LlamaConfig Config = new()
    {
        VocabSize = 29, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 16,
    };

    private static readonly List<Batch> Batches = ListBatchSource.Random(4, 2, 8, Config.VocabSize, seed: 3);

    private static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    /// <summary>
    /// One active layer of four: over 20,000 seeded steps each layer's frequency is its weight sigmoid(−score) over the
    /// total (within 0.015, about 4.5 standard deviations); two active of four: each layer's inclusion frequency matches
    /// the exact probability of successive weighted draws without replacement, enumerated.
    /// </summary>
    [Theory]
    [InlineData(0.25)]
    [InlineData(0.5)]
    public void SamplingFrequenciesFollowTheWeights(double activeFraction)
    {
        var importance = new LayerImportance(4, new IstOptions { ActiveFraction = activeFraction, Seed = 11 });
        double[] scores = [-1, 0, 1, 2.5];
        scores.CopyTo(importance.Scores, 0);
        const int steps = 20_000;
        for (int step = 1; step <= steps; step++)
        {
            Assert.Equal(importance.ActiveCount, importance.SampleActive(step).Distinct().Count());
        }
        var weights = scores.Select(score => Sigmoid(-score)).ToArray();
        var expected = new double[4];
        for (int first = 0; first < 4; first++)
        {
            double firstProbability = weights[first] / weights.Sum();
            if (importance.ActiveCount == 1)
            {
                expected[first] += firstProbability;
                continue;
            }
            for (int second = 0; second < 4; second++)
            {
                if (second != first)
                {
                    double probability = firstProbability * weights[second] / (weights.Sum() - weights[first]);
                    expected[first] += probability;
                    expected[second] += probability;
                }
            }
        }
        for (int layer = 0; layer < 4; layer++)
        {
            Assert.Equal(expected[layer], importance.SelectionCounts[layer] / (double)steps, 0.015);
        }
    }

    [Fact]
    public void ScoreUpdateMatchesTheFormula()
    {
        var importance = new LayerImportance(6, new IstOptions { Seed = 2 });
        var random = new Random(5);
        var before = Enumerable.Range(0, 6).Select(_ => random.NextDouble() * 4 - 2).ToArray();
        before.CopyTo(importance.Scores, 0);
        var sets = importance.SuppressionSets(step: 10);
        Assert.Equal(3, sets.Count);
        Assert.All(sets, set => Assert.Equal(3, set.Distinct().Count()));
        double[] losses = [2.1, 1.7, 2.6];
        importance.Update(sets, losses);
        var expected = (double[])before.Clone();
        double mean = losses.Select(loss => Math.Exp(-loss)).Average();
        for (int action = 0; action < 3; action++)
        {
            foreach (int layer in sets[action])
            {
                double p = Sigmoid(before[layer]);
                expected[layer] += (Math.Exp(-losses[action]) - mean) * p * (1 - p) * 10;
            }
        }
        Assert.Equal(expected, importance.Scores);
    }

    /// <summary>Inactive layers' adapters hold no gradient buffer and do not change; the active ones train.</summary>
    [Fact]
    public void OnlyTheActiveLayersTrain()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        var method = new IstTraining(AdapterTraining.Fresh("lora", () => new LoraAdapter(new LoraOptions { Rank = 2, Alpha = 4, Seed = 3 })),
            new IstOptions { Seed = 4, UpdateInterval = 2 }, [Batches[0]]);
        using var trainer = new Trainer(model, method, new ListBatchSource(Batches), new TrainingOptions { MaxSteps = 6, LearningRate = 1e-2, MaxGradNorm = 0 });
        var adapter = (LoraAdapter)method.Adapter;
        for (int step = 1; step <= 6; step++)
        {
            var before = adapter.Parameters.ToDictionary(p => p.Name, p => p.Data.ToArray<float>());
            trainer.Step();
            Assert.Single(method.ActiveLayers);
            foreach (var parameter in adapter.Parameters)
            {
                int layer = Engine.Peft.TargetModules.LayerIndex(parameter.Name);
                bool active = method.ActiveLayers.Contains(layer);
                Assert.Equal(active, parameter.Trainable);
                Assert.Null(parameter.Grad);
                if (!active)
                {
                    Assert.Equal(before[parameter.Name], parameter.Data.ToArray<float>());
                }
            }
            // A (trainable from step 1) of the active layer moves every step it is active.
            Assert.Contains(adapter.Parameters, p => method.ActiveLayers.Contains(Engine.Peft.TargetModules.LayerIndex(p.Name)) && !before[p.Name].SequenceEqual(p.Data.ToArray<float>()));
        }
        Assert.Equal(6, method.Importance.SelectionCounts.Sum());
        Assert.NotEqual(new double[4], method.Importance.Scores);
    }

    /// <summary>Backward does no work below the lowest active layer: with only the top layer active it executes far fewer operations.</summary>
    [Fact]
    public void BackwardStopsBelowTheLowestActiveLayer()
    {
        using var model = LlamaModel.CreateRandom(Config, seed: 1);
        using var adapter = new LoraAdapter(new LoraOptions { Rank = 2, Alpha = 4 });
        adapter.Attach(model);
        int Recorded(int activeLayer)
        {
            foreach (var parameter in adapter.Parameters)
            {
                parameter.Trainable = Engine.Peft.TargetModules.LayerIndex(parameter.Name) == activeLayer;
            }
            using var scope = new TensorScope();
            using var tape = new Tape();
            var (ids, targets) = Batches[0].ToTensors(model.Device);
            tape.Backward(model.Loss(ids, targets));
            foreach (var parameter in adapter.Parameters)
            {
                parameter.ClearGrad();
            }
            return tape.BackwardExecutedCount;
        }
        int top = Recorded(3), bottom = Recorded(0);
        // Each layer above the active one is recorded once; the top layer alone is about a quarter of all four.
        Assert.True(top * 3 < bottom, $"recorded {top} operations with the top layer active, {bottom} with the bottom one");
    }
}
