using Engine.Autograd;
using Engine.IO;

namespace Engine.Training.Optimization;

public sealed record AdamWOptions
{
    public double Beta1 { get; init; } = 0.9;

    public double Beta2 { get; init; } = 0.999;

    public double Epsilon { get; init; } = 1e-8;
}

/// <summary>
/// AdamW with decoupled weight decay over parameter groups. Moments are created on a parameter's first update, so
/// frozen parameters never get optimizer state; parameters without a gradient this step are skipped (their step count
/// does not advance), which is what per-step layer selection (IST) needs.
/// </summary>
public sealed class AdamW : IOptimizer
{
    private sealed class State(Tensor firstMoment, Tensor secondMoment)
    {
        public Tensor FirstMoment { get; } = firstMoment;

        public Tensor SecondMoment { get; } = secondMoment;

        public long Step { get; set; }
    }

    private readonly Dictionary<Parameter, State> states = new(ReferenceEqualityComparer.Instance);

    public AdamW(IReadOnlyList<ParameterGroup> groups, AdamWOptions? options = null)
    {
        Groups = groups;
        Options = options ?? new AdamWOptions();
        var names = new HashSet<string>();
        foreach (var parameter in groups.SelectMany(group => group.Parameters))
        {
            if (!names.Add(parameter.Name))
            {
                throw new ArgumentException($"adamw: parameter '{parameter.Name}' appears in more than one group (or twice in one)");
            }
        }
    }

    public IReadOnlyList<ParameterGroup> Groups { get; }

    public AdamWOptions Options { get; }

    /// <summary>Bytes held by optimizer moments.</summary>
    public long StateBytes => states.Values.Sum(state => 2 * state.FirstMoment.ElementCount * state.FirstMoment.DType.SizeInBytes());

    /// <summary>Updates every parameter that has a gradient, at each group's learning rate times <paramref name="learningRateScale"/> (the schedule).</summary>
    public void Step(double learningRateScale)
    {
        foreach (var group in Groups)
        {
            foreach (var parameter in group.Parameters)
            {
                if (!parameter.Trainable || parameter.Grad is null)
                {
                    continue;
                }
                var state = StateFor(parameter);
                state.Step++;
                parameter.Data.Backend.AdamWStep(parameter.Data, parameter.Grad, state.FirstMoment, state.SecondMoment,
                    new AdamWStepSettings(group.LearningRate * learningRateScale, Options.Beta1, Options.Beta2, Options.Epsilon, group.WeightDecay, state.Step));
            }
        }
    }

    /// <summary>Drops a parameter's moments and step count: its next update starts as its first (its entries changed meaning).</summary>
    public void ResetState(Parameter parameter)
    {
        if (states.Remove(parameter, out var state))
        {
            state.FirstMoment.Dispose();
            state.SecondMoment.Dispose();
        }
    }

    private State StateFor(Parameter parameter)
    {
        if (!states.TryGetValue(parameter, out var state))
        {
            using var untracked = TensorScope.Untracked();
            var data = parameter.Data;
            state = new State(Tensor.Zeros(data.Shape, data.DType, data.Device), Tensor.Zeros(data.Shape, data.DType, data.Device));
            states[parameter] = state;
        }
        return state;
    }

    /// <summary>Moments as "{name}.exp_avg" / "{name}.exp_avg_sq" and step counts in the metadata, written atomically.</summary>
    public void Save(string path)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var metadata = new Dictionary<string, string> { ["format"] = "engine-adamw" };
        foreach (var (parameter, state) in states)
        {
            tensors.Add(new($"{parameter.Name}.exp_avg", state.FirstMoment));
            tensors.Add(new($"{parameter.Name}.exp_avg_sq", state.SecondMoment));
            metadata[$"{parameter.Name}.step"] = state.Step.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        SafetensorsWriter.Write(path, tensors, metadata);
    }

    /// <summary>Restores moments saved by <see cref="Save"/> for the parameters of this optimizer's groups.</summary>
    public void Load(string path)
    {
        using var file = SafetensorsFile.Open(path);
        foreach (var parameter in Groups.SelectMany(group => group.Parameters))
        {
            if (!file.Metadata.TryGetValue($"{parameter.Name}.step", out var stepText))
            {
                continue;
            }
            var state = StateFor(parameter);
            foreach (var (suffix, target) in new[] { ("exp_avg", state.FirstMoment), ("exp_avg_sq", state.SecondMoment) })
            {
                string key = $"{parameter.Name}.{suffix}";
                if (!file.Contains(key))
                {
                    throw new InvalidDataException($"{path}: optimizer state for '{parameter.Name}' lacks '{key}'");
                }
                using var loaded = file.Load(key, target.DType, target.Device);
                if (!loaded.Shape.SequenceEqual(target.Shape))
                {
                    throw new InvalidDataException($"{path}: '{key}' has shape {loaded.ShapeString}, parameter has {target.ShapeString}");
                }
                target.CopyFrom(loaded);
            }
            state.Step = long.Parse(stepText, System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    public void Dispose()
    {
        foreach (var state in states.Values)
        {
            state.FirstMoment.Dispose();
            state.SecondMoment.Dispose();
        }
        states.Clear();
    }
}
