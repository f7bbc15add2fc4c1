using System.Text.Json;
using Engine.IO;
using System.Text.Json.Nodes;

namespace Engine.Model;

/// <summary>
/// The fields of a Hugging Face Llama <c>config.json</c> that define the architecture. Reading validates them and names the
/// file and field at fault; writing produces a file <c>transformers</c> loads as <c>LlamaForCausalLM</c>.
/// </summary>
public sealed record LlamaConfig
{
    public required int VocabSize { get; init; }

    public required int HiddenSize { get; init; }

    public required int IntermediateSize { get; init; }

    public required int NumHiddenLayers { get; init; }

    public required int NumAttentionHeads { get; init; }

    public int NumKeyValueHeads { get; init; }

    public double RmsNormEps { get; init; } = 1e-6;

    public double RopeTheta { get; init; } = 10000;

    public int MaxPositionEmbeddings { get; init; } = 2048;

    public bool TieWordEmbeddings { get; init; }

    public string HiddenAct { get; init; } = "silu";

    /// <summary>Standard deviation of the normal initialisation of linear and embedding weights (HF initializer_range).</summary>
    public double InitializerRange { get; init; } = 0.02;

    public int? BosTokenId { get; init; }

    public int? EosTokenId { get; init; }

    public int? PadTokenId { get; init; }

    public int HeadDim => HiddenSize / NumAttentionHeads;

    public int KeyValueHeads => NumKeyValueHeads == 0 ? NumAttentionHeads : NumKeyValueHeads;

    /// <summary>Throws naming <paramref name="source"/> and the field when the architecture is inconsistent or unsupported.</summary>
    public LlamaConfig Validate(string source = "config")
    {
        void Require(bool condition, string field, string problem)
        {
            if (!condition)
            {
                throw new InvalidDataException($"{source}: field '{field}' {problem}");
            }
        }
        Require(VocabSize > 0, "vocab_size", $"must be positive, got {VocabSize}");
        Require(HiddenSize > 0, "hidden_size", $"must be positive, got {HiddenSize}");
        Require(IntermediateSize > 0, "intermediate_size", $"must be positive, got {IntermediateSize}");
        Require(NumHiddenLayers > 0, "num_hidden_layers", $"must be positive, got {NumHiddenLayers}");
        Require(NumAttentionHeads > 0 && HiddenSize % NumAttentionHeads == 0, "num_attention_heads", $"({NumAttentionHeads}) must divide hidden_size ({HiddenSize})");
        Require(HeadDim % 2 == 0, "num_attention_heads", $"gives an odd head dimension {HeadDim}; rotary embedding needs it even");
        Require(KeyValueHeads > 0 && NumAttentionHeads % KeyValueHeads == 0, "num_key_value_heads", $"({KeyValueHeads}) must divide num_attention_heads ({NumAttentionHeads})");
        Require(RmsNormEps > 0, "rms_norm_eps", $"must be positive, got {RmsNormEps}");
        Require(RopeTheta > 0, "rope_theta", $"must be positive, got {RopeTheta}");
        Require(MaxPositionEmbeddings > 0, "max_position_embeddings", $"must be positive, got {MaxPositionEmbeddings}");
        Require(HiddenAct == "silu", "hidden_act", $"must be \"silu\" for Llama, got \"{HiddenAct}\"");
        return this;
    }

    public static LlamaConfig Load(string path)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException error)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {error.Message}", error);
        }
        if (root is not JsonObject json)
        {
            throw new InvalidDataException($"{path}: expected a JSON object");
        }
        int RequiredInt(string field) => ReadInt(json, field, path) ?? throw new InvalidDataException($"{path}: missing required field '{field}'");
        if (json["rope_scaling"] is JsonObject)
        {
            throw new InvalidDataException($"{path}: field 'rope_scaling' is set; scaled rotary embeddings are not supported");
        }
        return new LlamaConfig
        {
            VocabSize = RequiredInt("vocab_size"),
            HiddenSize = RequiredInt("hidden_size"),
            IntermediateSize = RequiredInt("intermediate_size"),
            NumHiddenLayers = RequiredInt("num_hidden_layers"),
            NumAttentionHeads = RequiredInt("num_attention_heads"),
            NumKeyValueHeads = ReadInt(json, "num_key_value_heads", path) ?? 0,
            RmsNormEps = ReadDouble(json, "rms_norm_eps", path) ?? 1e-6,
            RopeTheta = ReadDouble(json, "rope_theta", path) ?? 10000,
            MaxPositionEmbeddings = ReadInt(json, "max_position_embeddings", path) ?? 2048,
            TieWordEmbeddings = ReadBool(json, "tie_word_embeddings", path) ?? false,
            HiddenAct = ReadString(json, "hidden_act", path) ?? "silu",
            InitializerRange = ReadDouble(json, "initializer_range", path) ?? 0.02,
            BosTokenId = ReadInt(json, "bos_token_id", path),
            EosTokenId = ReadInt(json, "eos_token_id", path),
            PadTokenId = ReadInt(json, "pad_token_id", path),
        }.Validate(path);
    }

    /// <summary>Writes config.json atomically (temporary file, then rename).</summary>
    public void Save(string path)
    {
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = KeyValueHeads,
            ["head_dim"] = HeadDim,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["hidden_act"] = HiddenAct,
            ["initializer_range"] = InitializerRange,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["torch_dtype"] = "float32",
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["pad_token_id"] = PadTokenId,
        };
        AtomicFile.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static int? ReadInt(JsonObject json, string field, string path)
    {
        var node = json[field];
        if (node is null)
        {
            return null;
        }
        if (node is JsonArray array)
        {
            // eos_token_id may be a list in newer configs; the first entry is the primary one.
            node = array.Count > 0 ? array[0] : null;
            if (node is null)
            {
                return null;
            }
        }
        return node is JsonValue value && value.TryGetValue(out int number) ? number
            : node is JsonValue other && other.TryGetValue(out double real) && real == Math.Floor(real) && Math.Abs(real) < int.MaxValue ? (int)real
            : throw new InvalidDataException($"{path}: field '{field}' must be an integer, got {node.ToJsonString()}");
    }

    private static double? ReadDouble(JsonObject json, string field, string path)
    {
        var node = json[field];
        return node is null ? null
            : node is JsonValue value && value.TryGetValue(out double number) ? number
            : throw new InvalidDataException($"{path}: field '{field}' must be a number, got {node.ToJsonString()}");
    }

    private static bool? ReadBool(JsonObject json, string field, string path)
    {
        var node = json[field];
        return node is null ? null
            : node is JsonValue value && value.TryGetValue(out bool flag) ? flag
            : throw new InvalidDataException($"{path}: field '{field}' must be true or false, got {node.ToJsonString()}");
    }

    private static string? ReadString(JsonObject json, string field, string path)
    {
        var node = json[field];
        return node is null ? null
            : node is JsonValue value && value.TryGetValue(out string? text) ? text
            : throw new InvalidDataException($"{path}: field '{field}' must be a string, got {node.ToJsonString()}");
    }
}
