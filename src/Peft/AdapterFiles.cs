using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Model;
using Engine.Peft.Lora;
using Engine.Peft.Spiel;
using Engine.Peft.VbLora;

namespace Engine.Peft;

/// <summary>
/// Hugging Face peft adapter folders: adapter_config.json (which method, its settings, the targets) and
/// adapter_model.safetensors (tensors keyed "base_model.model.&lt;module path&gt;.&lt;tensor&gt;", no adapter name).
/// </summary>
public static class AdapterFiles
{
    public const string ConfigFileName = "adapter_config.json";

    public const string WeightsFileName = "adapter_model.safetensors";

    internal static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>Whether <paramref name="directory"/> looks like an adapter folder.</summary>
    public static bool IsAdapterDirectory(string directory) => File.Exists(Path.Combine(directory, ConfigFileName));

    /// <summary>The key of a module's tensor in adapter_model.safetensors.</summary>
    public static string Key(string modulePath, string tensorName) => $"base_model.model.{modulePath}.{tensorName}";

    /// <summary>Reads an adapter folder and attaches it to <paramref name="model"/> (whose base parameters it freezes).</summary>
    public static Adapter Load(string directory, LlamaModel model)
    {
        var config = AdapterConfig.Read(Path.Combine(directory, ConfigFileName));
        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            throw new FileNotFoundException($"{directory}: the adapter folder has {ConfigFileName} but no {WeightsFileName}", weightsPath);
        }
        using var weights = SafetensorsFile.Open(weightsPath);
        string peftType = config.RequiredString("peft_type");
        return peftType switch
        {
            "LORA" => LoraAdapter.Load(config, weights, model),
            "VBLORA" => VbLoraAdapter.Load(config, weights, model),
            "SFT" => SpielAdapter.Load(config, weights, model),
            _ => throw new InvalidDataException($"{config.Path}: peft_type '{peftType}' is not supported here (supported: LORA, VBLORA, SFT)"),
        };
    }

    /// <summary>
    /// Copies a module's tensor from the file into <paramref name="target"/>, checking the key exists and the shapes agree
    /// (an adapter made for another base model fails here, naming the module and both shapes).
    /// </summary>
    internal static void LoadInto(SafetensorsFile weights, string key, Tensor target)
    {
        if (!weights.Contains(key))
        {
            throw new InvalidDataException($"{weights.Path}: missing tensor '{key}' (expected shape {target.ShapeString})");
        }
        var entry = weights.Entry(key);
        if (!entry.Shape.SequenceEqual(target.ShapeArray()))
        {
            throw new InvalidDataException($"{weights.Path}: '{key}' has shape {ShapeMath.Format(entry.Shape)} but this base model needs {target.ShapeString}: " +
                "the adapter was made for a model of other dimensions (or another rank/vector length than its config says)");
        }
        using var loaded = weights.Load(key, target.DType, target.Device);
        target.CopyFrom(loaded);
    }

    /// <summary>Rejects tensors in the file that no attached module accounts for (an adapter for other modules or layers).</summary>
    internal static void RejectUnexpected(SafetensorsFile weights, IEnumerable<string> expectedKeys)
    {
        var expected = expectedKeys.ToHashSet();
        var unexpected = weights.Names.Where(name => !expected.Contains(name)).ToList();
        if (unexpected.Count > 0)
        {
            throw new InvalidDataException($"{weights.Path}: {unexpected.Count} tensor(s) match no module this adapter's target_modules select in the base model, " +
                $"e.g. '{unexpected[0]}' (the adapter was made for another model, or its config does not match its weights)");
        }
    }
}

/// <summary>adapter_config.json as read: missing fields take peft's defaults; wrong types are errors naming the field.</summary>
public sealed class AdapterConfig
{
    private readonly JsonObject root;

    private AdapterConfig(string path, JsonObject root)
    {
        Path = path;
        this.root = root;
    }

    public string Path { get; }

    public static AdapterConfig Read(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{path}: no adapter config (an adapter folder holds {AdapterFiles.ConfigFileName} and {AdapterFiles.WeightsFileName})", path);
        }
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException error)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {error.Message}");
        }
        return node is JsonObject root ? new AdapterConfig(path, root) : throw new InvalidDataException($"{path}: expected a JSON object");
    }

    public bool Has(string field) => root[field] is not null;

    public string RequiredString(string field) =>
        String(field) ?? throw new InvalidDataException($"{Path}: field '{field}' is required");

    public string? String(string field) => Get(field, node => node.GetValue<string>(), "a string");

    public int Int(string field, int fallback) => Get(field, node => (int?)node.GetValue<int>(), "an integer") ?? fallback;

    public ulong UInt64(string field, ulong fallback) => Get(field, node => (ulong?)node.GetValue<ulong>(), "a non-negative integer") ?? fallback;

    public double Double(string field, double fallback) => Get(field, node => (double?)node.GetValue<double>(), "a number") ?? fallback;

    public bool Bool(string field, bool fallback) => Get(field, node => (bool?)node.GetValue<bool>(), "true or false") ?? fallback;

    /// <summary>An object of integers (SpIEL's num_deltas: module path → count), or null when absent.</summary>
    public IReadOnlyDictionary<string, int>? IntMap(string field) => root[field] switch
    {
        null => null,
        JsonObject map => map.ToDictionary(pair => pair.Key, pair => Get(field, _ => (int?)pair.Value!.GetValue<int>(), "an object of integers") ?? 0),
        _ => throw new InvalidDataException($"{Path}: field '{field}' must be an object mapping module paths to integers"),
    };

    /// <summary>target_modules: a list (suffix matches, "all-linear" allowed) or a string (a whole-path regex, or "all-linear").</summary>
    public TargetModules Targets()
    {
        var node = root["target_modules"] ?? throw new InvalidDataException($"{Path}: field 'target_modules' is required");
        var targets = node switch
        {
            JsonArray list => TargetModules.FromNames(list.Select(item => item is JsonValue value && value.TryGetValue<string>(out var name)
                ? name
                : throw new InvalidDataException($"{Path}: field 'target_modules' must list strings, found {item?.ToJsonString() ?? "null"}"))),
            JsonValue value when value.TryGetValue<string>(out var text) => text == TargetModules.AllLinearName ? TargetModules.AllLinear : TargetModules.FromPattern(text),
            _ => throw new InvalidDataException($"{Path}: field 'target_modules' must be a list of names or a regex string"),
        };
        try
        {
            return targets.WithLayers(Layers());
        }
        catch (ArgumentException error)
        {
            throw new InvalidDataException($"{Path}: {error.Message}");
        }
    }

    /// <summary>layers_to_transform: null, one index or a list.</summary>
    private IReadOnlyList<int>? Layers() => root["layers_to_transform"] switch
    {
        null => null,
        JsonArray list => list.Select(item => item is JsonValue value && value.TryGetValue<int>(out var layer)
            ? layer
            : throw new InvalidDataException($"{Path}: field 'layers_to_transform' must list integers, found {item?.ToJsonString() ?? "null"}")).ToList(),
        JsonValue value when value.TryGetValue<int>(out var layer) => [layer],
        _ => throw new InvalidDataException($"{Path}: field 'layers_to_transform' must be null, an integer or a list of integers"),
    };

    /// <summary>An enum-valued string field, matched by name only (case-insensitive; numbers are not names).</summary>
    public TEnum Enum<TEnum>(string field, TEnum fallback) where TEnum : struct, System.Enum
    {
        string? text = String(field);
        if (text is null)
        {
            return fallback;
        }
        var match = System.Enum.GetNames<TEnum>().FirstOrDefault(name => string.Equals(name, text, StringComparison.OrdinalIgnoreCase));
        return match is not null
            ? System.Enum.Parse<TEnum>(match)
            : throw new InvalidDataException($"{Path}: field '{field}' must be one of {string.Join(", ", System.Enum.GetNames<TEnum>().Select(name => name.ToLowerInvariant()))}, got \"{text}\"");
    }

    /// <summary>Refuses a field whose value asks for something this engine does not implement (rather than ignoring it).</summary>
    public void Unsupported(string field, Func<JsonNode, bool> isDefault, string why)
    {
        if (root[field] is { } node && !IsDefault(node, isDefault))
        {
            throw new InvalidDataException($"{Path}: {field} = {node.ToJsonString()} is not supported: {why}");
        }
    }

    /// <summary>A value of an unexpected JSON type is not the default either (and gets the same clear error).</summary>
    private static bool IsDefault(JsonNode node, Func<JsonNode, bool> isDefault)
    {
        try
        {
            return isDefault(node);
        }
        catch (Exception error) when (error is InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    private T? Get<T>(string field, Func<JsonNode, T?> read, string expected)
    {
        var node = root[field];
        if (node is null)
        {
            return default;
        }
        try
        {
            return read(node);
        }
        catch (Exception error) when (error is InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{Path}: field '{field}' must be {expected}, got {node.ToJsonString()}");
        }
    }
}
