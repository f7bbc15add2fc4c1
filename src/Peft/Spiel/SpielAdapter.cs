using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;

namespace Engine.Peft.Spiel;

/// <summary>
/// SpIEL (Ansell et al.): sparse deltas at a fixed budget on every targeted matrix, periodically pruned (smallest |value|)
/// and regrown, by accumulated gradients with AdamW (AG) or by SM3 row/column statistics (MA). The adapter owns its
/// optimizer: regrown AG slots get Adam moments seeded from the accumulated gradients and a per-element age for bias
/// correction, which a generic AdamW cannot express. Files: "&lt;module&gt;.sft_delta.values"/".indices" and a config with
/// num_deltas, as the reference (the authors' peft fork, tuners/sft) writes them.
/// </summary>
public sealed class SpielAdapter : Adapter, IAdapterOptimizer
{
    private readonly List<SpielModuleState> states = [];
    private IReadOnlyDictionary<string, int>? loadedCounts;
    private int totalSteps = int.MaxValue;
    private bool accumulating;

    public SpielAdapter(SpielOptions options) : base(options.Targets, options.Seed)
    {
        options.Validate();
        Options = options;
    }

    public SpielOptions Options { get; }

    public override string PeftType => "SFT";

    internal IReadOnlyList<SpielModuleState> States => states;

    public IReadOnlyList<SparseDeltaLinear> DeltaModules => states.Select(state => state.Module).ToList();

    public override IReadOnlyList<Parameter> Parameters => states.Select(state => state.Module.Values).ToList();

    public override IReadOnlyList<AdapterParameterGroup> ParameterGroups => [new AdapterParameterGroup("sft_deltas", Parameters)];

    /// <summary>Values and their int32 indices (an index counted as one number, as bytes / 4).</summary>
    public override double StoredParameterCount => 2.0 * states.Sum(state => (double)state.Module.DeltaCount);

    /// <summary>Reselections run while step &lt; total steps (the fraction decays over them); set by the trainer.</summary>
    public override void BeginTraining(int maxSteps) => totalSteps = maxSteps;

    /// <summary>Per module delta counts: the budget spread in proportion to size (same density everywhere), or a file's num_deltas.</summary>
    private readonly Dictionary<string, int> moduleCounts = [];

    protected override void Prepare(LlamaModel target, IReadOnlyList<string> moduleNames)
    {
        var layers = target.LinearLayers.Where(layer => moduleNames.Contains(layer.Name)).ToList();
        long targetSize = layers.Sum(layer => (long)layer.InFeatures * layer.OutFeatures);
        long budget = Options.DeltaCount ?? (long)Math.Round(Options.Density * target.ParameterCount);
        moduleCounts.Clear();
        foreach (var layer in layers)
        {
            long size = (long)layer.InFeatures * layer.OutFeatures;
            long count = loadedCounts is null ? budget * size / targetSize
                : loadedCounts.TryGetValue(layer.Name, out int saved) ? saved
                : throw new InvalidDataException($"spiel: num_deltas has no entry for {layer.Name}, which target_modules selects");
            if (size > int.MaxValue)
            {
                throw new ArgumentException($"spiel: {layer.Name} [out {layer.OutFeatures}, in {layer.InFeatures}] has more entries than int32 flat indices address");
            }
            if (count < 1 || count > size)
            {
                throw new ArgumentException($"spiel: {layer.Name} [out {layer.OutFeatures}, in {layer.InFeatures}] would get {count} deltas " +
                    $"(budget {budget} spread over {targetSize} target weights); it needs between 1 and {size}");
            }
            moduleCounts[layer.Name] = (int)count;
        }
    }

    protected override AdaptedLinear CreateModule(ILinearLayer baseLayer, int moduleIndex)
    {
        int count = moduleCounts[baseLayer.Name];
        var weight = baseLayer.Weight.Data;
        var indices = Tensor.FromArray<int>(RandomUniqueIndices((long)baseLayer.OutFeatures * baseLayer.InFeatures, count, DeriveSeed(Seed, (ulong)moduleIndex, 0)), [count], weight.Device);
        var values = new Parameter(Tensor.Zeros([count], weight.DType, weight.Device), $"{baseLayer.Name}.sft_delta.values");
        var state = new SpielModuleState(Options, baseLayer.OutFeatures, baseLayer.InFeatures, count, weight.DType, weight.Device);
        var module = new SparseDeltaLinear(baseLayer, indices, values, Options.Variant == SpielVariant.AccumulatedGradients ? (gradient, input) => Observe(state, gradient, input) : null);
        state.Module = module;
        states.Add(state);
        return module;
    }

    /// <summary>Ascending unique flat indices, uniform over the matrix (Floyd's sampling: k draws, no array of the matrix size).</summary>
    private static int[] RandomUniqueIndices(long size, int count, ulong seed)
    {
        var random = new Random(unchecked((int)(seed ^ (seed >> 32))));
        var chosen = new HashSet<int>(count);
        for (long candidateLimit = size - count; candidateLimit < size; candidateLimit++)
        {
            int draw = (int)random.NextInt64(candidateLimit + 1);
            chosen.Add(chosen.Contains(draw) ? (int)candidateLimit : draw);
        }
        var result = chosen.ToArray();
        Array.Sort(result);
        return result;
    }

    public override IReadOnlyList<Parameter> BeforeStep(int step)
    {
        base.BeforeStep(step);
        double fraction = step > 1 ? Options.ReselectionFraction(step - 1, totalSteps) : 0;
        if (fraction > 0)
        {
            Reselect(fraction);
        }
        var (inWindow, _) = Options.Window(step);
        int windowEnd = step - (step - 1) % Options.ReselectionInterval + Options.AccumulationSteps - 1;
        // Statistics only matter when the window ends in a reselection, judged regardless of the run's length: a run
        // extended with --resume finds the window it stopped in accumulated, as in a run of the longer length.
        accumulating = Options.Variant == SpielVariant.AccumulatedGradients && inWindow && Options.ReselectionFraction(windowEnd, int.MaxValue) > 0;
        return [];
    }

    /// <summary>SpIEL-AG's gradient hook: the first micro-batch of a window picks candidates by |dW|, later ones add Σg, Σg² at them.</summary>
    private void Observe(SpielModuleState state, Tensor gradient, Tensor input)
    {
        if (!accumulating)
        {
            return;
        }
        using var scope = new TensorScope();
        var backend = gradient.Backend;
        if (state.SampleCount == 0)
        {
            state.BeginWindow();
            // The one dense weight gradient SpIEL-AG needs, formed transiently per layer on the window's first micro-batch.
            var dense = Tensor.Empty([state.OutFeatures, state.InFeatures], gradient.DType, gradient.Device);
            using (var gradientTransposed = gradient.Transpose(0, 1))
            {
                backend.MatMul(gradientTransposed, input, dense, 1, 0);
            }
            backend.TopKIndices(dense, state.Module.DeltaCount, absolute: true, state.Candidates!);
            backend.GatherFlat(dense, state.Candidates!, state.GradientSum!);
            backend.Unary(UnaryOp.Square, state.GradientSum!, state.SquareSum!);
        }
        else
        {
            var sample = Tensor.Empty(state.GradientSum!.Shape, gradient.DType, gradient.Device);
            backend.SampledWeightGradient(gradient, input, state.Candidates!, sample, 0);
            backend.Binary(BinaryOp.Add, state.GradientSum!, sample, state.GradientSum!);
            backend.Unary(UnaryOp.Square, sample, sample);
            backend.Binary(BinaryOp.Add, state.SquareSum!, sample, state.SquareSum!);
        }
        state.SampleCount++;
    }

    /// <summary>Drops the <paramref name="fraction"/> of each matrix's slots with the smallest |value| and regrows as many.</summary>
    private void Reselect(double fraction)
    {
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        foreach (var state in states)
        {
            int dropCount = Math.Min(state.Module.DeltaCount, (int)Math.Round(fraction * state.Module.DeltaCount, MidpointRounding.AwayFromZero));
            if (dropCount > 0)
            {
                state.Reselect(dropCount);
            }
            else
            {
                // Nothing to replace in this matrix, but its window is over: the next one starts from fresh candidates.
                state.ReleaseWindow();
            }
        }
    }

    public void OptimizerStep(double learningRate, double weightDecay)
    {
        foreach (var state in states)
        {
            state.Step(learningRate, weightDecay);
        }
    }

    public long OptimizerStateBytes => states.Sum(state => state.OptimizerBytes);

    /// <summary>Bytes held per tuned parameter, as the engine holds them (see <see cref="SpielMemory"/>).</summary>
    public SpielMemory Memory()
    {
        long tuned = states.Sum(state => (long)state.Module.DeltaCount);
        long steady = states.Sum(state => state.SteadyBytes);
        long selection = states.Sum(state => state.SelectionBytes);
        long gradient = states.Sum(state => state.Module.DeltaCount * (long)state.Module.Values.DType.SizeInBytes());
        return new SpielMemory(tuned, steady, selection, gradient);
    }

    public (IReadOnlyList<KeyValuePair<string, Tensor>> Tensors, IReadOnlyDictionary<string, string> Metadata) OptimizerState()
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var metadata = new Dictionary<string, string> { ["format"] = "engine-spiel" };
        foreach (var state in states)
        {
            foreach (var (name, tensor) in state.CheckpointTensors())
            {
                tensors.Add(new($"{state.Module.Name}.{name}", tensor));
            }
            metadata[$"{state.Module.Name}.sample_count"] = state.SampleCount.ToString(CultureInfo.InvariantCulture);
        }
        return (tensors, metadata);
    }

    public void RestoreOptimizerState(SafetensorsFile file)
    {
        foreach (var state in states)
        {
            int samples = int.Parse(file.Metadata[$"{state.Module.Name}.sample_count"], CultureInfo.InvariantCulture);
            if (samples > 0)
            {
                state.BeginWindow();
                state.SampleCount = samples;
            }
            foreach (var (name, tensor) in state.CheckpointTensors())
            {
                AdapterFiles.LoadInto(file, $"{state.Module.Name}.{name}", tensor);
            }
        }
    }

    protected override IEnumerable<FileTensor> FileTensors()
    {
        foreach (var state in states)
        {
            yield return new FileTensor(AdapterFiles.Key(state.Module.Name, "sft_delta.values"), state.Module.Values.Data);
            yield return new FileTensor(AdapterFiles.Key(state.Module.Name, "sft_delta.indices"), state.Module.Indices);
        }
    }

    protected override JsonObject Config()
    {
        var config = CommonConfig();
        config["target_modules"] = TargetModulesJson();
        config["layers_to_transform"] = LayersJson();
        config["density"] = Options.Density;
        config["num_tunable_weights"] = states.Sum(state => (long)state.Module.DeltaCount);
        config["num_deltas"] = new JsonObject(states.Select(state => new KeyValuePair<string, JsonNode?>(state.Module.Name, state.Module.DeltaCount)));
        config["selection_algorithm"] = Options.Variant == SpielVariant.AccumulatedGradients ? "rigl" : "sm3";
        config["reselection_steps"] = Options.ReselectionInterval;
        config["selection_accumulation_steps"] = Options.AccumulationSteps;
        config["initial_reselection_rate"] = Options.InitialReselectionRate;
        config["reselection_rate_policy"] = Options.Policy.ToString().ToLowerInvariant();
        return config;
    }

    /// <summary>Builds the adapter an SFT config describes, attaches it to <paramref name="model"/> and loads its deltas.</summary>
    internal static SpielAdapter Load(AdapterConfig config, SafetensorsFile weights, LlamaModel model)
    {
        var counts = config.IntMap("num_deltas") ?? throw new InvalidDataException($"{config.Path}: field 'num_deltas' (module → delta count) is required");
        SpielAdapter adapter;
        try
        {
            string algorithm = config.String("selection_algorithm") ?? "rigl";
            adapter = new SpielAdapter(new SpielOptions
            {
                Variant = algorithm.ToLowerInvariant() switch
                {
                    "rigl" => SpielVariant.AccumulatedGradients,
                    "sm3" => SpielVariant.MomentumApproximation,
                    _ => throw new ArgumentException($"selection_algorithm '{algorithm}' is not supported (rigl or sm3)"),
                },
                Density = config.Double("density", 0.01),
                ReselectionInterval = config.Int("reselection_steps", 20),
                AccumulationSteps = config.Int("selection_accumulation_steps", 5),
                InitialReselectionRate = config.Double("initial_reselection_rate", 0.2),
                Policy = Enum.Parse<ReselectionPolicy>(config.String("reselection_rate_policy") ?? "linear", ignoreCase: true),
                InitialReallocation = false,
                Targets = config.Targets(),
            })
            { BaseModelNameOrPath = config.String("base_model_name_or_path"), loadedCounts = counts };
        }
        catch (ArgumentException error)
        {
            throw new InvalidDataException($"{config.Path}: {error.Message}");
        }
        try
        {
            adapter.Attach(model);
            var keys = new List<string>();
            foreach (var state in adapter.states)
            {
                string valuesKey = AdapterFiles.Key(state.Module.Name, "sft_delta.values"), indicesKey = AdapterFiles.Key(state.Module.Name, "sft_delta.indices");
                AdapterFiles.LoadInto(weights, valuesKey, state.Module.Values.Data);
                AdapterFiles.LoadInto(weights, indicesKey, state.Module.Indices);
                state.CheckIndices(weights.Path, indicesKey);
                keys.Add(valuesKey);
                keys.Add(indicesKey);
            }
            AdapterFiles.RejectUnexpected(weights, keys);
            return adapter;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        foreach (var state in states)
        {
            state.Dispose();
        }
    }
}

/// <summary>
/// Bytes SpIEL holds per tuned parameter. Steady: value, int32 index and optimizer state (AG: two moments and an int32
/// age; MA: the values' share of the row/column accumulators). During AG's selection window, candidates, Σg and Σg² add
/// 12 bytes. The gradient (one float per tuned parameter) exists only between backward and the optimizer step.
/// </summary>
public sealed record SpielMemory(long TunedParameters, long SteadyBytes, long SelectionBytes, long GradientBytes)
{
    public double SteadyBytesPerParameter => (double)SteadyBytes / TunedParameters;

    public double SelectionBytesPerParameter => (double)SelectionBytes / TunedParameters;
}
