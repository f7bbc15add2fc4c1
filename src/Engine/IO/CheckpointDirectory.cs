using System.Text.Json;

namespace Engine.IO;

/// <summary>
/// A Hugging Face checkpoint folder: either one <c>model.safetensors</c> or shards listed by <c>model.safetensors.index.json</c>
/// (<c>{"metadata": {...}, "weight_map": {tensor name: shard file name}}</c>). When both exist the single file wins, as in
/// transformers. Every shard is opened and checked against the index up front.
/// </summary>
public sealed class CheckpointDirectory : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafetensorsFile> files;
    private readonly Dictionary<string, SafetensorsFile> fileOf;

    private CheckpointDirectory(string directoryPath, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> fileOf, List<string> names)
    {
        DirectoryPath = directoryPath;
        this.files = files;
        this.fileOf = fileOf;
        Names = names;
    }

    public string DirectoryPath { get; }

    /// <summary>Tensor names in file order, or in weight_map order for a sharded checkpoint.</summary>
    public IReadOnlyList<string> Names { get; }

    public static CheckpointDirectory Open(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"checkpoint directory '{directory}' does not exist");
        }
        string singlePath = Path.Combine(directory, SingleFileName);
        if (File.Exists(singlePath))
        {
            var file = SafetensorsFile.Open(singlePath);
            return new CheckpointDirectory(directory, [file], file.Names.ToDictionary(name => name, _ => file), [.. file.Names]);
        }
        string indexPath = Path.Combine(directory, IndexFileName);
        if (File.Exists(indexPath))
        {
            return OpenSharded(directory, indexPath);
        }
        throw new FileNotFoundException($"checkpoint directory '{directory}' has neither {SingleFileName} nor {IndexFileName}");
    }

    public bool Contains(string name) => fileOf.ContainsKey(name);

    public SafetensorsEntry Entry(string name) => FileOf(name).Entry(name);

    /// <inheritdoc cref="SafetensorsFile.Load"/>
    public Tensor Load(string name, DType? dtype = null, Device? device = null) => FileOf(name).Load(name, dtype, device);

    public void Dispose()
    {
        foreach (var file in files)
        {
            file.Dispose();
        }
    }

    private SafetensorsFile FileOf(string name) =>
        fileOf.TryGetValue(name, out var file) ? file : throw new KeyNotFoundException($"checkpoint directory '{DirectoryPath}' has no tensor '{name}'");

    private static CheckpointDirectory OpenSharded(string directory, string indexPath)
    {
        var weightMap = ReadWeightMap(indexPath);
        var shards = new Dictionary<string, SafetensorsFile>();
        var fileOf = new Dictionary<string, SafetensorsFile>();
        try
        {
            foreach (var (name, shardName) in weightMap)
            {
                if (!shards.TryGetValue(shardName, out var shard))
                {
                    string shardPath = Path.Combine(directory, shardName);
                    if (!File.Exists(shardPath))
                    {
                        throw MalformedIndex(indexPath, $"weight_map entry '{name}' names shard '{shardName}', which does not exist");
                    }
                    shard = SafetensorsFile.Open(shardPath);
                    shards.Add(shardName, shard);
                }
                if (!shard.Contains(name))
                {
                    throw MalformedIndex(indexPath, $"weight_map entry '{name}' is not in its shard '{shardName}'");
                }
                fileOf.Add(name, shard);
            }
        }
        catch
        {
            foreach (var shard in shards.Values)
            {
                shard.Dispose();
            }
            throw;
        }
        return new CheckpointDirectory(directory, [.. shards.Values], fileOf, [.. weightMap.Select(pair => pair.Key)]);
    }

    private static InvalidDataException MalformedIndex(string indexPath, string detail, Exception? inner = null) =>
        new($"checkpoint index '{indexPath}': {detail}", inner);

    /// <summary>The weight_map entries in file order; each shard must be a plain file name inside the checkpoint directory.</summary>
    private static List<KeyValuePair<string, string>> ReadWeightMap(string indexPath)
    {
        using var document = SafetensorsFile.ParseJson(File.ReadAllBytes(indexPath), (detail, inner) => MalformedIndex(indexPath, detail, inner));
        if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("weight_map", out var map))
        {
            throw MalformedIndex(indexPath, "expected an object with a 'weight_map' field");
        }
        if (map.ValueKind != JsonValueKind.Object)
        {
            throw MalformedIndex(indexPath, $"'weight_map' is a JSON {map.ValueKind}, not an object");
        }
        var entries = new List<KeyValuePair<string, string>>();
        var seen = new HashSet<string>();
        try
        {
            foreach (var property in map.EnumerateObject())
            {
                string name = property.Name;
                if (!seen.Add(name))
                {
                    throw MalformedIndex(indexPath, $"weight_map entry '{name}' appears twice");
                }
                string? shardName = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null;
                if (string.IsNullOrEmpty(shardName) || Path.GetFileName(shardName) != shardName || shardName is "." or "..")
                {
                    throw MalformedIndex(indexPath, $"weight_map entry '{name}' has {property.Value.GetRawText()}, not a file name in the checkpoint directory");
                }
                entries.Add(new(name, shardName));
            }
        }
        catch (InvalidOperationException error)
        {
            // JsonElement raises this for a string whose escapes decode to invalid UTF-16 (a lone surrogate).
            throw MalformedIndex(indexPath, $"a string does not decode: {error.Message}", error);
        }
        return entries;
    }

    // ---------------------------------------------------------------- writing

    /// <summary>
    /// Writes <c>model.safetensors</c> when every tensor fits in <paramref name="maxShardBytes"/>, else
    /// <c>model-0000i-of-0000N.safetensors</c> shards (filled greedily in the order given; a tensor larger than the limit gets
    /// a shard of its own) and <c>model.safetensors.index.json</c> with <c>metadata.total_size</c> (tensor bytes, headers
    /// excluded), as transformers does. <paramref name="metadata"/> goes into every file's header. Each file is written
    /// atomically and the index last; files of the other layout or stale shards left from an earlier save are then deleted,
    /// so <see cref="Open"/> sees only what was just written.
    /// </summary>
    public static void WriteSharded(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors, long maxShardBytes, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        var list = tensors.ToList();
        var seen = new HashSet<string>();
        foreach (var (name, _) in list)
        {
            if (!seen.Add(name))
            {
                throw new ArgumentException($"tensor name '{name}' appears twice; checkpoint names must be unique");
            }
        }
        var shards = SplitIntoShards(list, maxShardBytes);
        Directory.CreateDirectory(directory);
        if (shards.Count == 1)
        {
            SafetensorsWriter.Write(Path.Combine(directory, SingleFileName), list, metadata);
            RemoveStaleFiles(directory, [SingleFileName]);
            return;
        }
        var shardNames = Enumerable.Range(1, shards.Count).Select(i => $"model-{i:D5}-of-{shards.Count:D5}.safetensors").ToList();
        for (int i = 0; i < shards.Count; i++)
        {
            SafetensorsWriter.Write(Path.Combine(directory, shardNames[i]), shards[i], metadata);
        }
        AtomicFile.Write(Path.Combine(directory, IndexFileName), stream =>
        {
            using var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
            writer.WriteStartObject();
            writer.WriteStartObject("metadata");
            writer.WriteNumber("total_size", list.Sum(pair => SafetensorsWriter.ByteLength(pair.Value)));
            writer.WriteEndObject();
            writer.WriteStartObject("weight_map");
            for (int i = 0; i < shards.Count; i++)
            {
                foreach (var (name, _) in shards[i])
                {
                    writer.WriteString(name, shardNames[i]);
                }
            }
            writer.WriteEndObject();
            writer.WriteEndObject();
        });
        RemoveStaleFiles(directory, [.. shardNames, IndexFileName]);
    }

    private static List<List<KeyValuePair<string, Tensor>>> SplitIntoShards(List<KeyValuePair<string, Tensor>> tensors, long maxShardBytes)
    {
        var shards = new List<List<KeyValuePair<string, Tensor>>> { new() };
        long shardBytes = 0;
        foreach (var pair in tensors)
        {
            long bytes = SafetensorsWriter.ByteLength(pair.Value);
            if (shards[^1].Count > 0 && shardBytes + bytes > maxShardBytes)
            {
                shards.Add([]);
                shardBytes = 0;
            }
            shards[^1].Add(pair);
            shardBytes += bytes;
        }
        return shards;
    }

    private static void RemoveStaleFiles(string directory, HashSet<string> written)
    {
        var candidates = Directory.GetFiles(directory, "model-*-of-*.safetensors")
            .Append(Path.Combine(directory, SingleFileName))
            .Append(Path.Combine(directory, IndexFileName));
        foreach (string path in candidates)
        {
            if (!written.Contains(Path.GetFileName(path)))
            {
                File.Delete(path);
            }
        }
    }
}
