using BenchmarkDotNet.Attributes;
using Engine.Model;
using Engine.Training;

namespace Engine.Bench;

/// <summary>
/// One full training step (forward, backward, clipping, AdamW) of the demo-sized Llama on the CPU, the engine's side of
/// bench/pytorch/llama_train_step.py (same shapes; run that with --threads equal to the engine's thread count).
/// </summary>
[Config(typeof(ThroughputConfig))]
public class TrainingStepBenchmarks : IWorkload
{
    private const int BatchSize = 16, Tokens = 64;
    private LlamaModel model = null!;
    private Trainer trainer = null!;

    [GlobalSetup]
    public void Setup()
    {
        var config = new LlamaConfig
        {
            VocabSize = 512, HiddenSize = 192, IntermediateSize = 512, NumHiddenLayers = 4, NumAttentionHeads = 6, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128,
        };
        model = LlamaModel.CreateRandom(config, seed: 1);
        trainer = RepeatedBatchTrainer.Create(model, new FullFineTuning(), BatchSize, Tokens, learningRate: 1e-3);
    }

    [Benchmark]
    public void FullFineTuningStep() => trainer.Step();

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) => (BatchSize * Tokens, "tokens");

    [GlobalCleanup]
    public void Cleanup()
    {
        trainer.Dispose();
        model.Dispose();
    }
}
