using Engine.Autograd;
using Engine.Model;
using Engine.Peft;
using Engine.Training.Optimization;

namespace Engine.Training;

/// <summary>
/// Trains an adapter (LoRA, LoRA-SP, VB-LoRA...): <paramref name="attach"/> puts a fresh adapter on the model, or loads one
/// to continue from; the base model stays frozen, and the result is a peft adapter folder.
/// </summary>
public sealed class AdapterTraining(string name, Func<LlamaModel, Adapter> attach) : ITrainingMethod
{
    private Adapter? adapter;

    /// <summary>A method that attaches a new adapter from <paramref name="create"/> (disposed again if attaching fails).</summary>
    public static AdapterTraining Fresh(string name, Func<Adapter> create) => new(name, model =>
    {
        var created = create();
        try
        {
            created.Attach(model);
            return created;
        }
        catch
        {
            created.Dispose();
            throw;
        }
    });

    public string Name => name;

    /// <summary>Written as base_model_name_or_path when the attached adapter has none (e.g. one continued from a file).</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The attached adapter (after <see cref="Attach"/>).</summary>
    public Adapter Adapter => adapter ?? throw new InvalidOperationException($"method '{name}' is not attached to a model yet");

    public IReadOnlyList<Parameter> StateParameters => Adapter.Parameters;

    public string Settings => Adapter.ResumeSignature();

    public IReadOnlyList<ParameterGroup> Attach(LlamaModel model, TrainingOptions options)
    {
        var attached = attach(model);
        try
        {
            attached.EnsureTrainable();
        }
        catch
        {
            attached.Dispose();
            throw;
        }
        attached.BaseModelNameOrPath ??= BaseModelNameOrPath;
        attached.BeginTraining(options.MaxSteps);
        adapter = attached;
        return adapter.ParameterGroups
            .Select(group => new ParameterGroup(group.Name, group.Parameters, group.LearningRate ?? options.LearningRate, group.WeightDecay ?? options.WeightDecay))
            .ToList();
    }

    public IOptimizer CreateOptimizer(IReadOnlyList<ParameterGroup> groups, TrainingOptions options) =>
        Adapter is IAdapterOptimizer own ? new AdapterOptimizer(own, groups) : new AdamW(groups, options.Adam);

    public IReadOnlyList<Parameter> BeforeStep(int step) => Adapter.BeforeStep(step);

    public void Resumed(int completedSteps) => Adapter.Resumed(completedSteps);

    public void SaveResult(LlamaModel model, string directory) => Adapter.Save(directory);
}
