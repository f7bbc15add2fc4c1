using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;

namespace Engine.Peft.VbLora;

/// <summary>
/// VB-LoRA (Li et al.): one vector bank [N, L] shared by every targeted module of every layer, and per module logits that
/// pick and mix k bank vectors for each length-L sub-vector of A and B. The bank and the logits train at their own
/// learning rates (paper: 1e-3 and 1e-2, no weight decay). Files are peft VBLORA files, with full logits or top-k only.
/// </summary>
public sealed class VbLoraAdapter : Adapter
{
    private const string BankKey = "base_model.vblora_vector_bank";
    private readonly List<VbLoraLinear> vbModules = [];
    private Parameter? bank;

    public VbLoraAdapter(VbLoraOptions options) : base(options.Targets, options.Seed)
    {
        options.Validate();
        Options = options;
    }

    public VbLoraOptions Options { get; private set; }

    public override string PeftType => "VBLORA";

    /// <summary>Sets the bank's and the logits' learning rates (an adapter loaded from a file starts with the paper's).</summary>
    public void SetLearningRates(double bankLearningRate, double logitsLearningRate)
    {
        var updated = Options with { BankLearningRate = bankLearningRate, LogitsLearningRate = logitsLearningRate };
        updated.Validate();
        Options = updated;
    }

    /// <summary>Whether <see cref="Adapter.Save"/> writes top-k indices and weights only (far smaller; the result is for inference).</summary>
    public bool SaveOnlyTopKWeights
    {
        get => Options.SaveOnlyTopKWeights;
        set
        {
            if (!value && IsTopKOnly)
            {
                throw new InvalidOperationException("vblora: this adapter was loaded from a top-k-only file; its full logits are gone, so it can only be saved top-k only");
            }
            Options = Options with { SaveOnlyTopKWeights = value };
        }
    }

    /// <summary>Loaded from a save_only_topk_weights file: the other logits are −inf, so it runs inference but cannot train.</summary>
    public bool IsTopKOnly { get; private set; }

    public Parameter Bank => bank ?? throw new InvalidOperationException("the VB-LoRA adapter is not attached to a model");

    public IReadOnlyList<VbLoraLinear> VbLoraModules => vbModules;

    public override IReadOnlyList<Parameter> Parameters => bank is null ? [] : [bank, .. Logits];

    private IEnumerable<Parameter> Logits => vbModules.SelectMany(module => new[] { module.LogitsA, module.LogitsB });

    public override IReadOnlyList<AdapterParameterGroup> ParameterGroups =>
    [
        new AdapterParameterGroup("vblora_vector_bank", [Bank], Options.BankLearningRate, 0),
        new AdapterParameterGroup("vblora_logits", Logits.ToList(), Options.LogitsLearningRate, 0),
    ];

    public override double StoredParameterCount =>
        StoredParameters(vbModules.Select(module => (module.OutFeatures, module.InFeatures)), Options);

    /// <summary>
    /// What a VB-LoRA file stores for modules of the given [out, in] shapes: N·L + S·N with full logits, or
    /// N·L + S·(k−1) + S·k·f with top-k only (S sub-vectors, f = index bytes / 4), the count its paper reports.
    /// </summary>
    public static double StoredParameters(IEnumerable<(int OutFeatures, int InFeatures)> moduleShapes, VbLoraOptions options)
    {
        long subVectors = moduleShapes.Sum(shape => (long)options.Rank * (shape.InFeatures / options.VectorLength + shape.OutFeatures / options.VectorLength));
        long bankSize = (long)options.VectorCount * options.VectorLength;
        return options.SaveOnlyTopKWeights
            ? bankSize + subVectors * (options.TopK - 1) + subVectors * options.TopK * options.IndexBytes / 4.0
            : bankSize + subVectors * options.VectorCount;
    }

    protected override void Prepare(LlamaModel target, IReadOnlyList<string> moduleNames)
    {
        int vectorLength = Options.VectorLength;
        ILinearLayer? first = null;
        foreach (var layer in target.LinearLayers.Where(layer => moduleNames.Contains(layer.Name)))
        {
            first ??= layer;
            if (layer.InFeatures % vectorLength != 0 || layer.OutFeatures % vectorLength != 0)
            {
                throw new ArgumentException($"vblora: vector length {vectorLength} must divide both dimensions of {layer.Name} [out {layer.OutFeatures}, in {layer.InFeatures}]" +
                    $" (in % L = {layer.InFeatures % vectorLength}, out % L = {layer.OutFeatures % vectorLength}); pick L dividing the hidden and intermediate sizes");
            }
            int limit = Math.Min(layer.InFeatures, layer.OutFeatures);
            if (Options.Rank > limit)
            {
                throw new ArgumentException($"vblora: rank {Options.Rank} is above min(in, out) = {limit} of {layer.Name} [out {layer.OutFeatures}, in {layer.InFeatures}]");
            }
        }
        var weight = first!.Weight.Data;
        bank = new Parameter(Tensor.Uniform([Options.VectorCount, vectorLength], -Options.BankInitBound, Options.BankInitBound,
            DeriveSeed(Seed, ulong.MaxValue, 0), weight.DType, weight.Device), "vblora_vector_bank");
    }

    protected override AdaptedLinear CreateModule(ILinearLayer baseLayer, int moduleIndex)
    {
        int rank = Options.Rank, vectorLength = Options.VectorLength, vectorCount = Options.VectorCount;
        var weight = baseLayer.Weight.Data;
        var logitsA = new Parameter(Tensor.Normal([rank, baseLayer.InFeatures / vectorLength, vectorCount], 0, Options.LogitsInitStd,
            DeriveSeed(Seed, (ulong)moduleIndex, 1), weight.DType, weight.Device), $"{baseLayer.Name}.vblora_logits_A");
        var logitsB = new Parameter(Tensor.Normal([baseLayer.OutFeatures / vectorLength, rank, vectorCount], 0, Options.LogitsInitStd,
            DeriveSeed(Seed, (ulong)moduleIndex, 2), weight.DType, weight.Device), $"{baseLayer.Name}.vblora_logits_B");
        var module = new VbLoraLinear(baseLayer, Bank, logitsA, logitsB, rank, Options.TopK, Options.Dropout, DropoutSeed);
        vbModules.Add(module);
        return module;
    }

    public override void EnsureTrainable()
    {
        if (IsTopKOnly)
        {
            throw new InvalidOperationException("vblora: this adapter was loaded from a save_only_topk_weights file (top-k indices and weights only, the other " +
                "logits are gone); it runs inference but cannot be trained: continue from an adapter saved with full logits");
        }
    }

    protected override IEnumerable<FileTensor> FileTensors()
    {
        yield return new FileTensor(BankKey, Bank.Data);
        foreach (var module in vbModules)
        {
            foreach (var (logits, suffix) in new[] { (module.LogitsA, "vblora_logits_A"), (module.LogitsB, "vblora_logits_B") })
            {
                string key = AdapterFiles.Key(module.Name, suffix);
                if (!Options.SaveOnlyTopKWeights)
                {
                    yield return new FileTensor(key, logits.Data);
                    continue;
                }
                var (indices, weights) = TopKFile.Select(logits.Data, Options.TopK);
                yield return new FileTensor(key + "_topk_indices", indices, Options.IndexBytes == 4 ? null : Options.IndexDType);
                yield return new FileTensor(key + "_topk_weights", weights);
            }
        }
    }

    protected override JsonObject Config()
    {
        var config = CommonConfig();
        config["r"] = Options.Rank;
        config["num_vectors"] = Options.VectorCount;
        config["vector_length"] = Options.VectorLength;
        config["topk"] = Options.TopK;
        config["target_modules"] = TargetModulesJson();
        config["save_only_topk_weights"] = Options.SaveOnlyTopKWeights;
        config["vblora_dropout"] = Options.Dropout;
        config["fan_in_fan_out"] = false;
        config["bias"] = "none";
        config["modules_to_save"] = null;
        config["init_vector_bank_bound"] = Options.BankInitBound;
        config["init_logits_std"] = Options.LogitsInitStd;
        config["layers_to_transform"] = LayersJson();
        config["layers_pattern"] = null;
        return config;
    }

    /// <summary>Builds the adapter a peft VBLORA config describes, attaches it to <paramref name="model"/> and loads its weights.</summary>
    internal static VbLoraAdapter Load(AdapterConfig config, SafetensorsFile weights, LlamaModel model)
    {
        config.Unsupported("bias", node => node.GetValue<string>() == "none", "only bias \"none\" is implemented (Llama linear layers have no bias)");
        config.Unsupported("fan_in_fan_out", node => !node.GetValue<bool>(), "Llama's linear layers store [out, in]");
        config.Unsupported("modules_to_save", node => node is JsonArray { Count: 0 }, "fully trained extra modules are not implemented");
        config.Unsupported("layers_pattern", node => node.GetValue<string>() == "layers", "Llama's decoder layers are 'model.layers.N'");
        var defaults = new VbLoraOptions();
        VbLoraAdapter adapter;
        try
        {
            adapter = new VbLoraAdapter(new VbLoraOptions
            {
                Rank = config.Int("r", defaults.Rank),
                VectorCount = config.Int("num_vectors", defaults.VectorCount),
                VectorLength = config.Int("vector_length", defaults.VectorLength),
                TopK = config.Int("topk", defaults.TopK),
                Dropout = config.Double("vblora_dropout", defaults.Dropout),
                BankInitBound = config.Double("init_vector_bank_bound", defaults.BankInitBound),
                LogitsInitStd = config.Double("init_logits_std", defaults.LogitsInitStd),
                SaveOnlyTopKWeights = config.Bool("save_only_topk_weights", false),
                Targets = config.Targets(),
            })
            { BaseModelNameOrPath = config.String("base_model_name_or_path") };
        }
        catch (ArgumentException error)
        {
            throw new InvalidDataException($"{config.Path}: {error.Message}");
        }
        try
        {
            adapter.Attach(model);
            adapter.LoadWeights(weights);
            return adapter;
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
    }

    private void LoadWeights(SafetensorsFile weights)
    {
        var keys = new List<string> { BankKey };
        AdapterFiles.LoadInto(weights, BankKey, Bank.Data);
        foreach (var module in vbModules)
        {
            foreach (var (logits, suffix) in new[] { (module.LogitsA, "vblora_logits_A"), (module.LogitsB, "vblora_logits_B") })
            {
                string key = AdapterFiles.Key(module.Name, suffix);
                if (weights.Contains(key))
                {
                    AdapterFiles.LoadInto(weights, key, logits.Data);
                    keys.Add(key);
                    continue;
                }
                TopKFile.Rebuild(weights, key, logits.Data, Options.TopK);
                keys.Add(key + "_topk_indices");
                keys.Add(key + "_topk_weights");
                IsTopKOnly = true;
            }
        }
        AdapterFiles.RejectUnexpected(weights, keys);
        if (IsTopKOnly && !Options.SaveOnlyTopKWeights)
        {
            // Saving it again must not pretend to have full logits.
            Options = Options with { SaveOnlyTopKWeights = true };
        }
    }
}
