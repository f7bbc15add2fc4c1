using System.Text.Json;
using Engine.Autograd;
using Engine.Model;
using Engine.Peft;
using Engine.Training.Data;
using Engine.Training.Optimization;

namespace Engine.Training.Ist;

/// <summary>
/// IST on top of an adapter method: each step only the adapters of a few sampled decoder layers train. Inactive layers'
/// parameters are frozen for the step, so they get no gradient buffer, the tape records nothing that only they need
/// (backward stops below the lowest active layer, as the base model is frozen), and the optimizer creates state only
/// for layers once they are active. Parameters not tied to a layer (VB-LoRA's shared bank) train every step. Scores are
/// updated every interval from forward passes on the reward batches, and are part of training checkpoints.
/// </summary>
public sealed class IstTraining : ITrainingMethod
{
    private readonly AdapterTraining inner;
    private readonly IstOptions options;
    private readonly IReadOnlyList<Batch> rewardBatches;
    private readonly Dictionary<int, List<Parameter>> layerParameters = [];
    private LlamaModel? model;
    private LayerImportance? importance;
    private Parameter? scoreState;

    public IstTraining(AdapterTraining inner, IstOptions options, IReadOnlyList<Batch> rewardBatches)
    {
        options.Validate();
        if (rewardBatches.Count == 0)
        {
            throw new ArgumentException("ist: the score updates need at least one reward batch");
        }
        this.inner = inner;
        this.options = options;
        this.rewardBatches = rewardBatches;
    }

    public string Name => inner.Name + "+ist";

    public string Settings => inner.Settings + JsonSerializer.Serialize(options);

    /// <summary>The adapter whose layers IST selects.</summary>
    public Adapter Adapter => inner.Adapter;

    public LayerImportance Importance => importance ?? throw new InvalidOperationException("ist: not attached to a model yet");

    /// <summary>The layers training in the current step.</summary>
    public IReadOnlyList<int> ActiveLayers { get; private set; } = [];

    /// <summary>The adapter's parameters, and the layer scores and selection counts (so a resumed run continues them).</summary>
    public IReadOnlyList<Parameter> StateParameters => [.. inner.StateParameters, scoreState!];

    public IReadOnlyList<ParameterGroup> Attach(LlamaModel target, TrainingOptions trainingOptions)
    {
        var groups = inner.Attach(target, trainingOptions);
        model = target;
        importance = new LayerImportance(target.Config.NumHiddenLayers, options);
        foreach (var parameter in groups.SelectMany(group => group.Parameters))
        {
            int layer = TargetModules.LayerIndex(parameter.Name);
            if (layer >= 0)
            {
                (layerParameters.TryGetValue(layer, out var list) ? list : layerParameters[layer] = []).Add(parameter);
            }
        }
        using (TensorScope.Untracked())
        {
            scoreState = new Parameter(Tensor.Zeros([2, importance.LayerCount], DType.Float64, Device.Cpu), "ist.scores_and_selection_counts", trainable: false);
        }
        return groups;
    }

    public IOptimizer CreateOptimizer(IReadOnlyList<ParameterGroup> groups, TrainingOptions trainingOptions) => inner.CreateOptimizer(groups, trainingOptions);

    public IReadOnlyList<Parameter> BeforeStep(int step)
    {
        var stale = inner.BeforeStep(step);
        if (step > 1 && (step - 1) % options.UpdateInterval == 0)
        {
            UpdateScores(step - 1);
        }
        ActiveLayers = Importance.SampleActive(step);
        foreach (var (layer, parameters) in layerParameters)
        {
            bool active = ActiveLayers.Contains(layer);
            foreach (var parameter in parameters)
            {
                parameter.Trainable = active;
            }
        }
        SaveScores();
        return stale;
    }

    /// <summary>One loss per action, each with a random part of the layers' adapters scaled down; no gradients.</summary>
    private void UpdateScores(int step)
    {
        var sets = Importance.SuppressionSets(step);
        var losses = new List<double>(sets.Count);
        using var noGrad = GradMode.NoGrad();
        foreach (var suppressed in sets)
        {
            var modules = inner.Adapter.Modules.Where(module => suppressed.Contains(TargetModules.LayerIndex(module.Name))).ToList();
            foreach (var module in modules)
            {
                module.OutputScale = options.SuppressionFactor;
            }
            try
            {
                losses.Add(rewardBatches.Average(RewardLoss));
            }
            finally
            {
                foreach (var module in modules)
                {
                    module.OutputScale = 1;
                }
            }
        }
        Importance.Update(sets, losses);
    }

    private double RewardLoss(Batch batch)
    {
        using var scope = new TensorScope();
        var (inputIds, targets) = batch.ToTensors(model!.Device);
        return model.Loss(inputIds, targets).Data.Item();
    }

    private void SaveScores()
    {
        var state = Importance.Scores.Concat(Importance.SelectionCounts.Select(count => (double)count)).ToArray();
        using var host = Tensor.FromArray<double>(state, [2, Importance.LayerCount]);
        scoreState!.Data.CopyFrom(host);
    }

    public void Resumed(int completedSteps)
    {
        inner.Resumed(completedSteps);
        var state = scoreState!.Data.ToArray<double>();
        for (int layer = 0; layer < Importance.LayerCount; layer++)
        {
            Importance.Scores[layer] = state[layer];
            Importance.SelectionCounts[layer] = (long)state[Importance.LayerCount + layer];
        }
    }

    public void SaveResult(LlamaModel target, string directory) => inner.SaveResult(target, directory);
}
