using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Engine.Model.Tokenization;

/// <summary>
/// Builds a Microsoft.ML.Tokenizers <see cref="Normalizer"/> from a tokenizer.json "normalizer" entry. Lowercase builds
/// on the library's <see cref="LowerCaseNormalizer"/>; the library has no counterpart of the others, which are small
/// subclasses below.
/// </summary>
internal static class TextNormalizers
{
    public static Normalizer? FromJson(TokenizerFile file, JsonElement? spec, string field)
    {
        if (spec is not JsonElement element)
        {
            return null;
        }

        string type = file.RequireString(element, "type", field + ".type");
        switch (type)
        {
            case "Sequence":
                JsonElement items = file.RequireArray(element, "normalizers", field + ".normalizers");
                var parts = new List<Normalizer>();
                int index = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    if (FromJson(file, item, $"{field}.normalizers[{index++}]") is Normalizer part)
                    {
                        parts.Add(part);
                    }
                }

                return new SequenceNormalizer(parts);
            case "Lowercase":
                return LowercaseNormalizer.Instance;
            case "Prepend":
                return new PrependNormalizer(file.RequireString(element, "prepend", field + ".prepend"));
            case "Replace":
                return new ReplaceNormalizer(
                    file.RequirePattern(element, "pattern", field + ".pattern"),
                    file.RequireString(element, "content", field + ".content"));
            case "Strip":
                return new StripNormalizer(
                    file.GetBool(element, "strip_left", field + ".strip_left", fallback: true),
                    file.GetBool(element, "strip_right", field + ".strip_right", fallback: true));
            case "NFC":
                return UnicodeForm(file, field, type, NormalizationForm.FormC);
            case "NFD":
                return UnicodeForm(file, field, type, NormalizationForm.FormD);
            case "NFKC":
                return UnicodeForm(file, field, type, NormalizationForm.FormKC);
            case "NFKD":
                return UnicodeForm(file, field, type, NormalizationForm.FormKD);
            default:
                throw file.Unsupported(field + ".type", $"normalizer type \"{type}\"");
        }
    }

    /// <summary>
    /// Hugging Face's Lowercase: Rust's per-character <c>char::to_lowercase</c>. That is the library's
    /// <see cref="LowerCaseNormalizer"/> (.NET invariant lowercasing) except for 'İ' (U+0130), the one character whose
    /// full lowercase mapping is two characters ("i" + U+0307) and which .NET leaves unchanged.
    /// </summary>
    internal sealed class LowercaseNormalizer : Normalizer
    {
        public static LowercaseNormalizer Instance { get; } = new();

        public override string Normalize(string original)
        {
            string lowered = LowerCaseNormalizer.Instance.Normalize(original);
            return lowered.Contains('\u0130') ? lowered.Replace("\u0130", "i\u0307", StringComparison.Ordinal) : lowered;
        }

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }

    private sealed class SequenceNormalizer(IReadOnlyList<Normalizer> parts) : Normalizer
    {
        public override string Normalize(string original)
        {
            string text = original;
            foreach (Normalizer part in parts)
            {
                text = part.Normalize(text);
            }

            return text;
        }

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }

    /// <summary>Hugging Face's Prepend: adds the prefix to any non-empty text.</summary>
    private sealed class PrependNormalizer(string prefix) : Normalizer
    {
        public override string Normalize(string original) => original.Length == 0 ? original : prefix + original;

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }

    private sealed class ReplaceNormalizer(Regex pattern, string content) : Normalizer
    {
        // An evaluator, not a replacement string, so '$' in the content is literal as in Hugging Face.
        public override string Normalize(string original) => pattern.Replace(original, _ => content);

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }

    private sealed class StripNormalizer(bool left, bool right) : Normalizer
    {
        public override string Normalize(string original) => (left, right) switch
        {
            (true, true) => original.Trim(),
            (true, false) => original.TrimStart(),
            (false, true) => original.TrimEnd(),
            _ => original,
        };

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }

    /// <summary>
    /// NFC/NFD/NFKC/NFKD need <see cref="string.Normalize(NormalizationForm)"/>, which returns non-ASCII text unchanged
    /// when the process runs with InvariantGlobalization; encoding would then silently differ from Hugging Face.
    /// </summary>
    private static Normalizer UnicodeForm(TokenizerFile file, string field, string type, NormalizationForm form)
        => "e\u0301".Normalize(NormalizationForm.FormC) == "\u00e9"
            ? new UnicodeFormNormalizer(form)
            : throw file.Unsupported(field + ".type", $"the {type} normalizer in a process running with InvariantGlobalization (string.Normalize is then a no-op)");

    private sealed class UnicodeFormNormalizer(NormalizationForm form) : Normalizer
    {
        public override string Normalize(string original) => original.Normalize(form);

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());
    }
}
