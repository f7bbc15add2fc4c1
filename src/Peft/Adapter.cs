using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;

namespace Engine.Peft;

/// <summary>
/// Parameters that train together. A null learning rate or weight decay means the run's own (VB-LoRA sets its bank and
/// logits rates itself, as its paper does).
/// </summary>
public sealed record AdapterParameterGroup(string Name, IReadOnlyList<Parameter> Parameters, double? LearningRate = null, double? WeightDecay = null);

/// <summary>
/// An adapter method attached to a model: it wraps the targeted linear layers, freezes every base parameter (so the base
/// gets neither gradient buffers nor optimizer state), owns the adapter parameters, and reads and writes Hugging Face peft
/// adapter folders (adapter_config.json + adapter_model.safetensors).
/// </summary>
public abstract class Adapter : IDisposable
{
    private readonly List<AdaptedLinear> modules = [];
    private LlamaModel? model;
    private List<bool> baseTrainable = [];
    private int currentStep;
    private ulong forwardCount;

    protected Adapter(TargetModules targets, ulong seed)
    {
        Targets = targets;
        Seed = seed;
    }

    /// <summary>peft's name for the method in adapter_config.json ("LORA", "VBLORA").</summary>
    public abstract string PeftType { get; }

    public TargetModules Targets { get; }

    /// <summary>Seeds initialisation, dropout masks and (LoRA-SP) freeze masks.</summary>
    public ulong Seed { get; }

    /// <summary>Written as base_model_name_or_path.</summary>
    public string? BaseModelNameOrPath { get; set; }

    public IReadOnlyList<AdaptedLinear> Modules => modules;

    public LlamaModel Model => model ?? throw new InvalidOperationException($"the {PeftType} adapter is not attached to a model");

    /// <summary>Everything the adapter owns whose value changes in training (what a training checkpoint stores).</summary>
    public abstract IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The optimizer's groups.</summary>
    public abstract IReadOnlyList<AdapterParameterGroup> ParameterGroups { get; }

    /// <summary>Entries that receive updates (for LoRA-SP, the unfrozen ones only).</summary>
    public long TrainableParameterCount => ParameterGroups.SelectMany(group => group.Parameters).Where(p => p.Trainable).Sum(p => p.Data.ElementCount);

    /// <summary>Numbers the adapter file stores (VB-LoRA's top-k files count an index as its bytes / 4, as its paper does).</summary>
    public abstract double StoredParameterCount { get; }

    /// <summary>Wraps the targeted layers of <paramref name="target"/> and freezes its base parameters.</summary>
    public void Attach(LlamaModel target)
    {
        if (model is not null)
        {
            throw new InvalidOperationException($"the {PeftType} adapter is already attached to a model");
        }
        var names = Targets.Resolve(target);
        foreach (var name in names)
        {
            if (target.LinearLayers.First(layer => layer.Name == name) is AdaptedLinear)
            {
                throw new InvalidOperationException($"{name} already carries an adapter; detach it (or merge it) before attaching another");
            }
        }
        using (TensorScope.Untracked())
        {
            // Everything that can fail (shape checks, masks) happens before the model is touched.
            Prepare(target, names);
            foreach (var name in names)
            {
                modules.Add(CreateModule(target.LinearLayers.First(layer => layer.Name == name), modules.Count));
            }
        }
        foreach (var module in modules)
        {
            target.ReplaceLinear(module.Name, _ => module);
        }
        baseTrainable = target.Parameters.Select(parameter => parameter.Trainable).ToList();
        target.SetBaseTrainable(false);
        model = target;
    }

    /// <summary>Puts the base layers back (unmerging first if merged).</summary>
    public void Detach()
    {
        var target = Model;
        foreach (var module in modules)
        {
            if (module.IsMerged)
            {
                module.Unmerge();
            }
            target.ReplaceLinear(module.Name, _ => module.Base);
        }
        RestoreBaseTrainable(target);
    }

    /// <summary>The base parameters train again if they did before the adapter froze them.</summary>
    private void RestoreBaseTrainable(LlamaModel target)
    {
        foreach (var (parameter, trainable) in target.Parameters.Zip(baseTrainable))
        {
            parameter.Trainable = trainable;
        }
        model = null;
    }

    /// <summary>
    /// Folds every module's ΔW into its base weight for good and puts the plain layers back (peft's merge_and_unload): the
    /// model is then an ordinary model that runs and saves as one.
    /// </summary>
    public void MergeAndUnload()
    {
        var target = Model;
        foreach (var module in modules.Where(module => !module.IsMerged))
        {
            module.CheckMergeable();
        }
        foreach (var module in modules)
        {
            if (!module.IsMerged)
            {
                module.Merge();
            }
            target.ReplaceLinear(module.Name, _ => module.Base);
        }
        RestoreBaseTrainable(target);
    }

    /// <summary>Validates the targets' shapes and creates shared parameters (VB-LoRA's bank) before any layer is wrapped.</summary>
    protected virtual void Prepare(LlamaModel target, IReadOnlyList<string> moduleNames)
    {
    }

    protected abstract AdaptedLinear CreateModule(ILinearLayer baseLayer, int moduleIndex);

    /// <summary>
    /// Folds every module's ΔW into its base weight (W += ΔW), so inference runs at the base model's speed. All modules
    /// are checked first, so a non-finite ΔW anywhere leaves every weight unchanged.
    /// </summary>
    public void Merge()
    {
        if (modules.FirstOrDefault(module => module.IsMerged) is { } merged)
        {
            throw new InvalidOperationException($"{merged.Name}: the adapter is already merged into the base weight");
        }
        foreach (var module in modules)
        {
            module.CheckMergeable();
        }
        foreach (var module in modules)
        {
            module.Merge();
        }
    }

    public void Unmerge()
    {
        if (modules.FirstOrDefault(module => !module.IsMerged) is { } unmerged)
        {
            throw new InvalidOperationException($"{unmerged.Name}: the adapter is not merged, so there is nothing to unmerge");
        }
        foreach (var module in modules)
        {
            module.Unmerge();
        }
    }

    /// <summary>Called once before training with the run's step budget (SpIEL's reselection rate decays over it).</summary>
    public virtual void BeginTraining(int maxSteps)
    {
    }

    /// <summary>Throws when the adapter cannot be trained (a VB-LoRA adapter loaded from a top-k-only file).</summary>
    public virtual void EnsureTrainable()
    {
    }

    /// <summary>
    /// Called before each optimizer step. Returns the parameters whose optimizer state no longer matches their entries
    /// (LoRA-SP's redrawn masks) so the optimizer can start them afresh.
    /// </summary>
    public virtual IReadOnlyList<Parameter> BeforeStep(int step)
    {
        currentStep = step;
        forwardCount = 0;
        return [];
    }

    /// <summary>Called after a training checkpoint restored the parameters, with the number of steps it had completed.</summary>
    public virtual void Resumed(int completedSteps) => currentStep = completedSteps;

    /// <summary>
    /// A dropout seed for the adapter path of one module, or null when no dropout applies (only while gradients are
    /// recorded, i.e. in training). It depends on (seed, step, call), so a resumed run draws the same masks.
    /// </summary>
    protected ulong? DropoutSeed(double probability)
    {
        if (probability == 0 || !GradMode.IsEnabled || Tape.Current is null)
        {
            return null;
        }
        return DeriveSeed(Seed ^ 0xD80F0A7E5EEDUL, (ulong)currentStep, forwardCount++);
    }

    /// <summary>A well-mixed seed for a sub-stream (module, matrix, draw number...) of <paramref name="seed"/>.</summary>
    protected internal static ulong DeriveSeed(ulong seed, ulong stream, ulong index)
    {
        var (first, second) = Philox.Block(seed + stream * 0x9E3779B97F4A7C15UL, index);
        return ((ulong)first << 32) | second;
    }

    /// <summary>
    /// The settings a training checkpoint must have been made with (the adapter config without the base model's path):
    /// resuming with other ones (another LoRA-SP mask seed or granularity, another rank...) would silently scramble state.
    /// </summary>
    public string ResumeSignature()
    {
        var config = Config();
        config.Remove("base_model_name_or_path");
        return config.ToJsonString();
    }

    /// <summary>Writes adapter_model.safetensors then adapter_config.json into <paramref name="directory"/>, each atomically.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        var tensors = new List<KeyValuePair<string, Tensor>>();
        var storedTypes = new Dictionary<string, string>();
        foreach (var entry in FileTensors())
        {
            tensors.Add(new(entry.Key, entry.Tensor));
            if (entry.StoredDType is { } stored)
            {
                storedTypes[entry.Key] = stored;
            }
        }
        SafetensorsWriter.Write(Path.Combine(directory, AdapterFiles.WeightsFileName), tensors, null, storedTypes);
        var config = Config();
        AtomicFile.WriteAllText(Path.Combine(directory, AdapterFiles.ConfigFileName), config.ToJsonString(AdapterFiles.JsonOptions) + "\n");
    }

    /// <summary>A tensor of the adapter file; <see cref="StoredDType"/> narrows int32 indices to "U8"/"I16" as peft stores them.</summary>
    protected sealed record FileTensor(string Key, Tensor Tensor, string? StoredDType = null);

    protected abstract IEnumerable<FileTensor> FileTensors();

    protected abstract JsonObject Config();

    /// <summary>The config fields every peft adapter has, in peft's order.</summary>
    protected JsonObject CommonConfig() => new()
    {
        ["peft_type"] = PeftType,
        ["task_type"] = "CAUSAL_LM",
        ["base_model_name_or_path"] = BaseModelNameOrPath,
        ["revision"] = null,
        ["inference_mode"] = true,
    };

    /// <summary>target_modules as peft writes it: a sorted list of names (all-linear expanded, as peft does), or the pattern.</summary>
    protected JsonNode TargetModulesJson()
    {
        if (Targets.Pattern is { } pattern)
        {
            return JsonValue.Create(pattern);
        }
        var names = Targets.Names ?? modules.Select(module => module.Name[(module.Name.LastIndexOf('.') + 1)..]).Distinct().ToList();
        return new JsonArray(names.Order(StringComparer.Ordinal).Select(name => (JsonNode?)JsonValue.Create(name)).ToArray());
    }

    protected JsonNode? LayersJson() => Targets.Layers is null ? null : new JsonArray(Targets.Layers.Select(layer => (JsonNode?)JsonValue.Create(layer)).ToArray());

    public virtual void Dispose()
    {
        if (model is not null)
        {
            Detach();
        }
        foreach (var parameter in Parameters)
        {
            parameter.Dispose();
        }
        GC.SuppressFinalize(this);
    }
}
