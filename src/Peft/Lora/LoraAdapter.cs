using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;

namespace Engine.Peft.Lora;

/// <summary>
/// LoRA (Hu et al.) and LoRA-SP (the same with a seeded part of A and B frozen). A ~ U(±1/sqrt(in)) (kaiming-uniform with
/// a = sqrt(5), as peft), B = 0, so the adapter starts as a no-op. Files are peft LoRA files; a LoRA-SP adapter is saved
/// with full A and B (it loads anywhere a LoRA loads) and its mask settings under extra lora_sp_* config keys.
/// </summary>
public sealed class LoraAdapter : Adapter
{
    private const string SparsityPrefix = "lora_sp_";
    private readonly List<LoraLinear> loraModules = [];
    private int currentDraw;

    public LoraAdapter(LoraOptions options) : base(options.Targets, options.Seed)
    {
        options.Validate();
        Options = options;
    }

    public LoraOptions Options { get; }

    public override string PeftType => "LORA";

    public IReadOnlyList<LoraLinear> LoraModules => loraModules;

    public override IReadOnlyList<Parameter> Parameters => loraModules.SelectMany(module => module.A.State.Concat(module.B.State)).ToList();

    public override IReadOnlyList<AdapterParameterGroup> ParameterGroups =>
        [new AdapterParameterGroup("lora", loraModules.SelectMany(module => module.A.Trainable.Concat(module.B.Trainable)).ToList())];

    public override double StoredParameterCount => loraModules.Sum(module => (double)module.Rank * (module.InFeatures + module.OutFeatures));

    protected override void Prepare(LlamaModel target, IReadOnlyList<string> moduleNames)
    {
        foreach (var layer in target.LinearLayers.Where(layer => moduleNames.Contains(layer.Name)))
        {
            int limit = Math.Min(layer.InFeatures, layer.OutFeatures);
            if (Options.Rank > limit)
            {
                throw new ArgumentException($"lora: rank {Options.Rank} is above min(in, out) = {limit} of {layer.Name} [out {layer.OutFeatures}, in {layer.InFeatures}]");
            }
        }
    }

    protected override AdaptedLinear CreateModule(ILinearLayer baseLayer, int moduleIndex)
    {
        int rank = Options.Rank, inFeatures = baseLayer.InFeatures, outFeatures = baseLayer.OutFeatures;
        var weight = baseLayer.Weight.Data;
        double bound = 1 / Math.Sqrt(inFeatures);
        using var a = Tensor.Uniform([rank, inFeatures], -bound, bound, DeriveSeed(Seed, (ulong)moduleIndex, 0), weight.DType, weight.Device);
        using var b = Tensor.Zeros([outFeatures, rank], weight.DType, weight.Device);
        var module = new LoraLinear(baseLayer, rank,
            Factor(baseLayer.Name, "lora_A", a, moduleIndex, rankAxis: 0),
            Factor(baseLayer.Name, "lora_B", b, moduleIndex, rankAxis: 1),
            Options.Scale, Options.Dropout, DropoutSeed)
        {
            CompactRankComponents = Options.Sparsity?.Granularity == FreezeGranularity.Row,
        };
        loraModules.Add(module);
        return module;
    }

    private LoraFactor Factor(string modulePath, string matrix, Tensor initial, int moduleIndex, int rankAxis)
    {
        string name = $"{modulePath}.{matrix}.weight";
        return Options.Sparsity is null
            ? new DenseFactor(new Parameter(initial.Clone(), name))
            : new SplitFactor(name, initial, Mask(name, initial, moduleIndex, rankAxis, currentDraw));
    }

    /// <summary>
    /// The trainable entries of A (rank axis 0) or B (rank axis 1). Element masks of A and B are independent; rank-component
    /// masks share one draw, so a component trains or stays frozen as a whole (its A row with its B column): with B = 0 at
    /// init, a trainable A row whose B column was frozen would never receive a gradient.
    /// </summary>
    private int[] Mask(string name, Tensor matrix, int moduleIndex, int rankAxis, int draw)
    {
        var sparsity = Options.Sparsity!;
        ulong stream = sparsity.Granularity == FreezeGranularity.Row ? (ulong)(2 * moduleIndex) : (ulong)(2 * moduleIndex + rankAxis);
        return FreezeMask.TrainableIndices(name, matrix.Dim(0), matrix.Dim(1), rankAxis, sparsity, DeriveSeed(Seed ^ 0x5EA12C0FFEEUL, stream, (ulong)draw));
    }

    /// <summary>Which mask is in force at <paramref name="step"/> (1-based): masks are redrawn at steps 1 + k·N.</summary>
    private int DrawNumber(int step) => Options.Sparsity is { RedrawEvery: > 0 } sparsity ? Math.Max(step - 1, 0) / sparsity.RedrawEvery : 0;

    public override IReadOnlyList<Parameter> BeforeStep(int step)
    {
        base.BeforeStep(step);
        int draw = DrawNumber(step);
        if (draw == currentDraw)
        {
            return [];
        }
        currentDraw = draw;
        var redrawn = new List<Parameter>();
        using var scope = new TensorScope();
        foreach (var (module, factor, rankAxis) in SplitFactors())
        {
            factor.Redraw(Mask(factor.Values.Name, factor.Frozen.Data, loraModules.IndexOf(module), rankAxis, draw));
            redrawn.Add(factor.Values);
        }
        return redrawn;
    }

    public override void Resumed(int completedSteps)
    {
        base.Resumed(completedSteps);
        foreach (var (_, factor, _) in SplitFactors())
        {
            // The checkpoint wrote the frozen parts directly: after a redraw they may hold trained, non-zero entries.
            factor.RecheckFrozen();
        }
        int draw = DrawNumber(Math.Max(completedSteps, 1));
        if (draw == currentDraw)
        {
            return;
        }
        // The checkpoint restored values already split by the mask in force when it was written: point at that mask.
        currentDraw = draw;
        foreach (var (module, factor, rankAxis) in SplitFactors())
        {
            factor.ReplaceIndices(Mask(factor.Values.Name, factor.Frozen.Data, loraModules.IndexOf(module), rankAxis, draw));
        }
    }

    private IEnumerable<(LoraLinear Module, SplitFactor Factor, int RankAxis)> SplitFactors()
    {
        foreach (var module in loraModules)
        {
            if (module.A is SplitFactor a)
            {
                yield return (module, a, 0);
            }
            if (module.B is SplitFactor b)
            {
                yield return (module, b, 1);
            }
        }
    }

    public override void Dispose()
    {
        var splitFactors = SplitFactors().Select(entry => entry.Factor).ToList();
        base.Dispose();
        foreach (var factor in splitFactors)
        {
            factor.Dispose();
        }
    }

    protected override IEnumerable<FileTensor> FileTensors()
    {
        foreach (var module in loraModules)
        {
            yield return new FileTensor(AdapterFiles.Key(module.Name, "lora_A.weight"), module.A.Value());
            yield return new FileTensor(AdapterFiles.Key(module.Name, "lora_B.weight"), module.B.Value());
        }
    }

    protected override JsonObject Config()
    {
        var config = CommonConfig();
        config["r"] = Options.Rank;
        config["lora_alpha"] = Options.Alpha;
        config["lora_dropout"] = Options.Dropout;
        config["target_modules"] = TargetModulesJson();
        config["fan_in_fan_out"] = false;
        config["bias"] = "none";
        config["use_rslora"] = Options.UseRsLora;
        config["modules_to_save"] = null;
        config["init_lora_weights"] = true;
        config["layers_to_transform"] = LayersJson();
        config["layers_pattern"] = null;
        config["rank_pattern"] = new JsonObject();
        config["alpha_pattern"] = new JsonObject();
        config["use_dora"] = false;
        if (Options.Sparsity is { } sparsity)
        {
            config[SparsityPrefix + "frozen_fraction"] = sparsity.FrozenFraction;
            config[SparsityPrefix + "granularity"] = sparsity.Granularity.ToString().ToLowerInvariant();
            config[SparsityPrefix + "redraw_every"] = sparsity.RedrawEvery;
            config[SparsityPrefix + "seed"] = Seed;
        }
        return config;
    }

    /// <summary>Builds the adapter a peft LoRA config describes, attaches it to <paramref name="model"/> and loads its weights.</summary>
    internal static LoraAdapter Load(AdapterConfig config, SafetensorsFile weights, LlamaModel model)
    {
        config.Unsupported("use_dora", node => !node.GetValue<bool>(), "DoRA is not implemented");
        config.Unsupported("bias", node => node.GetValue<string>() == "none", "only bias \"none\" is implemented (Llama linear layers have no bias)");
        config.Unsupported("fan_in_fan_out", node => !node.GetValue<bool>(), "Llama's linear layers store [out, in]");
        config.Unsupported("modules_to_save", node => node is JsonArray { Count: 0 }, "fully trained extra modules are not implemented");
        config.Unsupported("rank_pattern", node => node is JsonObject { Count: 0 }, "per-module ranks are not implemented");
        config.Unsupported("alpha_pattern", node => node is JsonObject { Count: 0 }, "per-module alphas are not implemented");
        config.Unsupported("layers_pattern", node => node.GetValue<string>() == "layers", "Llama's decoder layers are 'model.layers.N'");
        config.Unsupported("exclude_modules", node => node is JsonArray { Count: 0 }, "excluding modules is not implemented");
        config.Unsupported("lora_bias", node => !node.GetValue<bool>(), "LoRA biases are not implemented");
        // true/false/"gaussian" only change the initialisation; PiSSA, OLoRA, LoftQ... also change the base weights.
        config.Unsupported("init_lora_weights", node => node.GetValueKind() is System.Text.Json.JsonValueKind.True or System.Text.Json.JsonValueKind.False
            || node.GetValue<string>() == "gaussian", "this initialisation modifies the base model, which is not implemented");
        LoraOptions options;
        try
        {
            bool sparse = config.Has(SparsityPrefix + "frozen_fraction");
            options = new LoraOptions
            {
                Rank = config.Int("r", 8),
                Alpha = config.Double("lora_alpha", 8),
                Dropout = config.Double("lora_dropout", 0),
                UseRsLora = config.Bool("use_rslora", false),
                Targets = config.Targets(),
                Seed = sparse ? config.UInt64(SparsityPrefix + "seed", 0) : 0,
                Sparsity = sparse ? new LoraSparsityOptions
                {
                    FrozenFraction = config.Double(SparsityPrefix + "frozen_fraction", 0.5),
                    Granularity = config.Enum(SparsityPrefix + "granularity", FreezeGranularity.Element),
                    RedrawEvery = config.Int(SparsityPrefix + "redraw_every", 0),
                } : null,
            };
        }
        catch (ArgumentException error)
        {
            throw new InvalidDataException($"{config.Path}: {error.Message}");
        }
        var adapter = new LoraAdapter(options) { BaseModelNameOrPath = config.String("base_model_name_or_path") };
        try
        {
            adapter.Attach(model);
            var keys = new List<string>();
            foreach (var module in adapter.loraModules)
            {
                foreach (var (factor, key) in new[] { (module.A, AdapterFiles.Key(module.Name, "lora_A.weight")), (module.B, AdapterFiles.Key(module.Name, "lora_B.weight")) })
                {
                    using var value = factor.Value();
                    AdapterFiles.LoadInto(weights, key, value);
                    factor.SetValue(value);
                    keys.Add(key);
                }
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
}
