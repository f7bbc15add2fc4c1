using Engine.Autograd;
using Engine.IO;

namespace Engine.Model;

/// <summary>
/// Llama as in Hugging Face LlamaForCausalLM: token embedding, decoder layers, final RMSNorm and LM head (tied to the
/// embedding when the config says so). Parameters carry HF names, so checkpoints load and save with HF keys.
/// </summary>
public sealed class LlamaModel : IDisposable
{
    private readonly List<Parameter> parameters = [];

    private LlamaModel(LlamaConfig config, Func<string, int[], bool, Parameter> makeParameter)
    {
        Config = config;
        Parameter Weight(string name, int[] shape) => Track(makeParameter(name, shape, false));
        Parameter Norm(string name) => Track(makeParameter(name, [config.HiddenSize], true));
        Embedding = Weight("model.embed_tokens.weight", [config.VocabSize, config.HiddenSize]);
        Layers = Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaLayer(i, config, Weight, Norm)).ToArray();
        FinalNorm = Norm("model.norm.weight");
        LanguageModelHead = config.TieWordEmbeddings ? null : Weight("lm_head.weight", [config.VocabSize, config.HiddenSize]);
    }

    public LlamaConfig Config { get; }

    public Parameter Embedding { get; }

    public IReadOnlyList<LlamaLayer> Layers { get; }

    public Parameter FinalNorm { get; }

    /// <summary>The output projection [vocab, hidden]; null when tied to <see cref="Embedding"/>.</summary>
    public Parameter? LanguageModelHead { get; }

    /// <summary>The base model's parameters with their Hugging Face names, in checkpoint order.</summary>
    public IReadOnlyList<Parameter> Parameters => parameters;

    public Device Device => Embedding.Device;

    public long ParameterCount => parameters.Sum(p => p.Data.ElementCount);

    private Parameter Track(Parameter parameter)
    {
        parameters.Add(parameter);
        return parameter;
    }

    /// <summary>Random initialisation as Hugging Face does: weights ~ N(0, initializer_range), norms = 1. Seeded.</summary>
    public static LlamaModel CreateRandom(LlamaConfig config, ulong seed, Device? device = null)
    {
        config.Validate();
        using var untracked = TensorScope.Untracked();
        ulong index = 0;
        return new LlamaModel(config, (name, shape, isNorm) => new Parameter(
            isNorm ? Tensor.Full(shape, 1.0, DType.Float32, device) : Tensor.Normal(shape, 0, config.InitializerRange, seed * 1000003 + index++, DType.Float32, device),
            name));
    }

    /// <summary>Loads config.json and the safetensors checkpoint (single file or sharded) of a Hugging Face model folder.</summary>
    public static LlamaModel Load(string directory, Device? device = null)
    {
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"no config.json in model folder {directory}", configPath);
        }
        var config = LlamaConfig.Load(configPath);
        using var checkpoint = CheckpointDirectory.Open(directory);
        using var untracked = TensorScope.Untracked();
        var model = new LlamaModel(config, (name, shape, _) =>
        {
            if (!checkpoint.Contains(name))
            {
                throw new InvalidDataException($"{directory}: the checkpoint has no tensor '{name}' (expected {ShapeMath.Format(shape)})");
            }
            var tensor = checkpoint.Load(name, DType.Float32, device);
            if (!tensor.Shape.SequenceEqual(shape))
            {
                var actual = tensor.ShapeString;
                tensor.Dispose();
                throw new InvalidDataException($"{directory}: tensor '{name}' has shape {actual}, but config.json implies {ShapeMath.Format(shape)}");
            }
            return new Parameter(tensor, name);
        });
        return model;
    }

    /// <summary>Writes config.json and model.safetensors (HF key names), each atomically.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"),
            parameters.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Data)), new Dictionary<string, string> { ["format"] = "pt" });
        Config.Save(Path.Combine(directory, "config.json"));
    }

    /// <summary>Every linear layer of every decoder layer (the targets of adapter methods).</summary>
    public IEnumerable<ILinearLayer> LinearLayers => Layers.SelectMany(layer => layer.LinearLayers);

    /// <summary>Replaces one linear layer (adapters wrap the base layer they are given).</summary>
    public void ReplaceLinear(string name, Func<ILinearLayer, ILinearLayer> replace)
    {
        if (!Layers.Any(layer => layer.Replace(name, replace)))
        {
            throw new ArgumentException($"the model has no linear layer named '{name}'");
        }
    }

    /// <summary>Freezes or unfreezes every base parameter.</summary>
    public void SetBaseTrainable(bool trainable)
    {
        foreach (var parameter in parameters)
        {
            parameter.Trainable = trainable;
        }
    }

    /// <summary>
    /// Logits [batch, tokens, vocab] for int32 token ids [batch, tokens]. With a cache, positions continue after the cached
    /// ones and this step's keys/values are appended (no-grad only).
    /// </summary>
    public Variable Forward(Tensor inputIds, KeyValueCache? cache = null)
    {
        if (inputIds.Rank != 2 || inputIds.DType != DType.Int32)
        {
            throw new ArgumentException($"forward: token ids must be int32 [batch, tokens], got {inputIds.Describe()}");
        }
        if (cache is not null && GradMode.IsEnabled && Tape.Current is not null)
        {
            throw new InvalidOperationException("forward: a key/value cache is for generation; use it under GradMode.NoGrad()");
        }
        int tokens = inputIds.Dim(1), start = cache?.Length ?? 0;
        if (start + tokens > Config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"forward: positions up to {start + tokens} exceed max_position_embeddings {Config.MaxPositionEmbeddings}");
        }
        using var positions = Tensor.FromArray<int>(Enumerable.Range(start, tokens).ToArray(), [tokens], Device);
        var hidden = Ops.Embedding(Embedding, inputIds);
        foreach (var layer in Layers)
        {
            hidden = layer.Forward(hidden, positions, cache);
        }
        cache?.Advance(tokens);
        hidden = Ops.RmsNorm(hidden, FinalNorm, Config.RmsNormEps);
        return Ops.Linear(hidden, LanguageModelHead ?? Embedding);
    }

    /// <summary>Mean next-token cross-entropy: targets [batch, tokens] int32, −100 where no loss is taken.</summary>
    public Variable Loss(Tensor inputIds, Tensor targets) => Ops.CrossEntropy(Forward(inputIds), targets);

    public void Dispose()
    {
        foreach (var parameter in parameters)
        {
            parameter.Dispose();
        }
    }
}
