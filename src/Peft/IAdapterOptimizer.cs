using Engine.IO;

namespace Engine.Peft;

/// <summary>
/// An adapter whose parameters need an optimizer of their own (SpIEL: AdamW with moments seeded at regrowth and a
/// per-element age, or SM3). The training loop calls it instead of its AdamW, and checkpoints its state.
/// </summary>
public interface IAdapterOptimizer
{
    /// <summary>Updates every parameter that has a gradient.</summary>
    void OptimizerStep(double learningRate, double weightDecay);

    /// <summary>Bytes of optimizer state held now (moments, ages, accumulators, selection statistics).</summary>
    long OptimizerStateBytes { get; }

    /// <summary>Everything a checkpoint must hold besides the parameters: named tensors and small metadata.</summary>
    (IReadOnlyList<KeyValuePair<string, Tensor>> Tensors, IReadOnlyDictionary<string, string> Metadata) OptimizerState();

    /// <summary>Restores what <see cref="OptimizerState"/> wrote.</summary>
    void RestoreOptimizerState(SafetensorsFile file);
}
