using Engine.Autograd;

namespace Engine.Training.Optimization;

/// <summary>What the trainer needs of an optimizer: a step at the schedule's scale, state accounting, and checkpoints.</summary>
public interface IOptimizer : IDisposable
{
    IReadOnlyList<ParameterGroup> Groups { get; }

    /// <summary>Bytes of optimizer state held now.</summary>
    long StateBytes { get; }

    /// <summary>Updates every parameter that has a gradient, at each group's rate times <paramref name="learningRateScale"/>.</summary>
    void Step(double learningRateScale);

    /// <summary>Forgets a parameter's state (its entries changed meaning).</summary>
    void ResetState(Parameter parameter);

    void Save(string path);

    void Load(string path);
}
