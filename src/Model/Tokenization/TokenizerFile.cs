using System.Text.Json;
using System.Text.RegularExpressions;

namespace Engine.Model.Tokenization;

/// <summary>
/// A parsed Hugging Face tokenizer JSON file (tokenizer.json or tokenizer_config.json) with accessors whose
/// errors name the file and the dotted path of the offending field, e.g. <c>model.merges[12]</c>.
/// </summary>
internal sealed class TokenizerFile : IDisposable
{
    private readonly JsonDocument _document;

    private TokenizerFile(string path, JsonDocument document)
    {
        Path = path;
        _document = document;
    }

    public string Path { get; }

    public JsonElement Root => _document.RootElement;

    public static TokenizerFile Open(string path)
    {
        using FileStream stream = File.OpenRead(path);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw new InvalidDataException($"{path}: the top level must be a JSON object");
        }

        return new TokenizerFile(path, document);
    }

    public void Dispose() => _document.Dispose();

    public InvalidDataException Invalid(string field, string problem) => new($"{Path}: field '{field}' {problem}");

    public NotSupportedException Unsupported(string field, string what) => new($"{Path}: field '{field}': {what} is not supported");

    /// <summary>The member, or null when it is absent or JSON null (tokenizer.json writes null for unused parts).</summary>
    public static JsonElement? Get(JsonElement obj, string name)
        => obj.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value : null;

    public JsonElement Require(JsonElement obj, string name, string field)
        => Get(obj, name) ?? throw Invalid(field, "is missing");

    public JsonElement RequireObject(JsonElement obj, string name, string field)
    {
        JsonElement value = Require(obj, name, field);
        return value.ValueKind == JsonValueKind.Object ? value : throw Invalid(field, $"must be an object, not {value.ValueKind}");
    }

    public JsonElement RequireArray(JsonElement obj, string name, string field)
    {
        JsonElement value = Require(obj, name, field);
        return value.ValueKind == JsonValueKind.Array ? value : throw Invalid(field, $"must be an array, not {value.ValueKind}");
    }

    public string RequireString(JsonElement obj, string name, string field)
        => GetString(obj, name, field) ?? throw Invalid(field, "is missing");

    public string? GetString(JsonElement obj, string name, string field)
    {
        JsonElement? value = Get(obj, name);
        if (value is null)
        {
            return null;
        }

        return value.Value.ValueKind == JsonValueKind.String
            ? value.Value.GetString()!
            : throw Invalid(field, $"must be a string, not {value.Value.ValueKind}");
    }

    public bool GetBool(JsonElement obj, string name, string field, bool fallback)
    {
        JsonElement? value = Get(obj, name);
        return value?.ValueKind switch
        {
            null => fallback,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Invalid(field, $"must be true or false, not {value.Value.ValueKind}"),
        };
    }

    public int GetInt(JsonElement obj, string name, string field, int fallback)
    {
        JsonElement? value = Get(obj, name);
        if (value is null)
        {
            return fallback;
        }

        return value.Value.ValueKind == JsonValueKind.Number && value.Value.TryGetInt32(out int result)
            ? result
            : throw Invalid(field, $"must be a 32-bit integer, not {value.Value}");
    }

    /// <summary>
    /// Reads a tokenizer.json pattern, <c>{"String": "..."}</c> (literal) or <c>{"Regex": "..."}</c>, as a .NET regex.
    /// </summary>
    public Regex RequirePattern(JsonElement obj, string name, string field)
    {
        JsonElement pattern = RequireObject(obj, name, field);
        if (GetString(pattern, "String", field + ".String") is string literal)
        {
            return new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant);
        }

        string regex = GetString(pattern, "Regex", field + ".Regex") ?? throw Invalid(field, "must have a \"String\" or \"Regex\" member");
        try
        {
            return new Regex(regex, RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            // tokenizer.json regexes are written for Oniguruma; most, not all, are valid .NET syntax.
            throw Unsupported(field + ".Regex", $"the regex \"{regex}\" (.NET Regex rejects it: {e.Message})");
        }
    }

    /// <summary>
    /// Reads a special-token setting that tokenizer_config.json writes either as a string or as an AddedToken
    /// object with a "content" member.
    /// </summary>
    public string? GetTokenContent(JsonElement obj, string name)
    {
        JsonElement? value = Get(obj, name);
        return value?.ValueKind switch
        {
            null => null,
            JsonValueKind.String => value.Value.GetString(),
            JsonValueKind.Object => RequireString(value.Value, "content", name + ".content"),
            _ => throw Invalid(name, $"must be a string or an object with \"content\", not {value.Value.ValueKind}"),
        };
    }
}
