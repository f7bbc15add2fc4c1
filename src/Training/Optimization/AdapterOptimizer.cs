using Engine.Autograd;
using Engine.IO;
using Engine.Peft;

namespace Engine.Training.Optimization;

/// <summary>The trainer's view of an adapter that optimizes its own parameters (<see cref="IAdapterOptimizer"/>, e.g. SpIEL).</summary>
public sealed class AdapterOptimizer(IAdapterOptimizer adapter, IReadOnlyList<ParameterGroup> groups) : IOptimizer
{
    public IReadOnlyList<ParameterGroup> Groups { get; } = groups.Count == 1
        ? groups
        : throw new ArgumentException($"an adapter optimizer takes one parameter group, got {groups.Count}");

    public long StateBytes => adapter.OptimizerStateBytes;

    public void Step(double learningRateScale) => adapter.OptimizerStep(Groups[0].LearningRate * learningRateScale, Groups[0].WeightDecay);

    /// <summary>The adapter resets the state of entries it changes itself (regrown slots get seeded moments).</summary>
    public void ResetState(Parameter parameter)
    {
    }

    public void Save(string path)
    {
        var (tensors, metadata) = adapter.OptimizerState();
        SafetensorsWriter.Write(path, tensors, metadata);
    }

    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        adapter.RestoreOptimizerState(file);
    }

    public void Dispose()
    {
    }
}
