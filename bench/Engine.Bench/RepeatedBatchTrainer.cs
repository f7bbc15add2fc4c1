using Engine.Model;
using Engine.Training;
using Engine.Training.Data;

namespace Engine.Bench;

/// <summary>The training-step benchmarks' fixed workload: one random batch repeated, and a trainer over it.</summary>
internal static class RepeatedBatchTrainer
{
    private sealed class RepeatedBatch(Batch batch) : IBatchSource
    {
        public Batch Next() => batch;

        public string SaveState() => "";

        public void RestoreState(string state)
        {
        }
    }

    /// <summary>A trainer that steps <paramref name="method"/> on one seeded random batch of next-token targets, without end.</summary>
    public static Trainer Create(LlamaModel model, ITrainingMethod method, int batchSize, int tokens, double learningRate)
    {
        var random = new Random(0);
        var ids = Enumerable.Range(0, batchSize * tokens).Select(_ => random.Next(model.Config.VocabSize)).ToArray();
        var targets = ids.Skip(1).Append(0).ToArray();
        return new Trainer(model, method, new RepeatedBatch(new Batch(ids, ids, targets, batchSize, tokens, Epoch: 0)),
            new TrainingOptions { MaxSteps = int.MaxValue, LearningRate = learningRate });
    }
}
