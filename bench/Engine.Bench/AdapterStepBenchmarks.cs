using BenchmarkDotNet.Attributes;
using Engine.Model;
using Engine.Peft.Lora;
using Engine.Peft.Spiel;
using Engine.Training;

namespace Engine.Bench;

/// <summary>
/// One training step of the demo's model (hidden 128, intermediate 352, 4 layers, 16 × 64 tokens) per method at the same
/// trainable budget: LoRA r=8 on every linear layer (74,752 entries) and SpIEL-AG / SpIEL-MA with 74,752 deltas. SpIEL's
/// periodic work (AG's dense gradient on a window's first micro-batch and its statistics, reselection every 20 steps)
/// falls inside the measured steps in its real proportion, since BenchmarkDotNet runs many consecutive steps.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class AdapterStepBenchmarks : IWorkload
{
    private const int BatchSize = 16, Tokens = 64, Budget = 74_752;
    private LlamaModel model = null!;
    private Trainer trainer = null!;

    [Params("full", "lora", "spiel-ag", "spiel-ma")]
    public string Method { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        var config = new LlamaConfig
        {
            VocabSize = 256, HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2, MaxPositionEmbeddings = 128,
        };
        model = LlamaModel.CreateRandom(config, seed: 1);
        ITrainingMethod method = Method switch
        {
            "full" => new FullFineTuning(),
            "lora" => AdapterTraining.Fresh("lora", () => new LoraAdapter(new LoraOptions { Rank = 8, Alpha = 16 })),
            "spiel-ag" => AdapterTraining.Fresh("spiel-ag", () => new SpielAdapter(new SpielOptions { Variant = SpielVariant.AccumulatedGradients, DeltaCount = Budget })),
            _ => AdapterTraining.Fresh("spiel-ma", () => new SpielAdapter(new SpielOptions { Variant = SpielVariant.MomentumApproximation, DeltaCount = Budget })),
        };
        trainer = RepeatedBatchTrainer.Create(model, method, BatchSize, Tokens, learningRate: 1e-3);
    }

    [Benchmark]
    public void TrainingStep() => trainer.Step();

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) => (BatchSize * Tokens, "tokens");

    [GlobalCleanup]
    public void Cleanup()
    {
        trainer.Dispose();
        model.Dispose();
    }
}
