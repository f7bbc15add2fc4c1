using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Engine.Model.Tokenization;

/// <summary>
/// One stage of a tokenizer.json "decoder", applied to the list of token strings as Hugging Face's
/// <c>decode_chain</c> does. The library's <c>BpeTokenizer.Decode</c> only knows byte-level and prefix/suffix
/// conventions, not these chains (Llama 2's Replace, ByteFallback, Fuse, Strip), so they are implemented here.
/// </summary>
internal abstract class DecodingStep
{
    public abstract List<string> Apply(List<string> tokens);

    /// <summary>The stages of a "decoder" entry, or null when there is none (tokens are then joined with spaces).</summary>
    public static List<DecodingStep>? FromJson(TokenizerFile file, JsonElement? spec, string field)
    {
        if (spec is not JsonElement element)
        {
            return null;
        }

        var steps = new List<DecodingStep>();
        Add(file, element, field, steps);
        return steps;
    }

    private static void Add(TokenizerFile file, JsonElement spec, string field, List<DecodingStep> steps)
    {
        string type = file.RequireString(spec, "type", field + ".type");
        switch (type)
        {
            case "Sequence":
                int index = 0;
                foreach (JsonElement item in file.RequireArray(spec, "decoders", field + ".decoders").EnumerateArray())
                {
                    Add(file, item, $"{field}.decoders[{index++}]", steps);
                }

                break;
            case "ByteLevel":
                steps.Add(new ByteLevelDecoding());
                break;
            case "ByteFallback":
                steps.Add(new ByteFallbackDecoding());
                break;
            case "Fuse":
                steps.Add(new FuseDecoding());
                break;
            case "Replace":
                steps.Add(new ReplaceDecoding(
                    file.RequirePattern(spec, "pattern", field + ".pattern"),
                    file.RequireString(spec, "content", field + ".content")));
                break;
            case "Strip":
                string content = file.RequireString(spec, "content", field + ".content");
                steps.Add(new StripDecoding(
                    content.Length == 1 ? content[0] : throw file.Unsupported(field + ".content", $"stripping \"{content}\" (one character expected)"),
                    file.GetInt(spec, "start", field + ".start", fallback: 0),
                    file.GetInt(spec, "stop", field + ".stop", fallback: 0)));
                break;
            case "Metaspace":
                steps.Add(new MetaspaceDecoding(
                    MetaspaceStep.ReadReplacement(file, spec, field),
                    MetaspaceStep.ReadPrependScheme(file, spec, field) != MetaspaceStep.PrependScheme.Never));
                break;
            default:
                throw file.Unsupported(field + ".type", $"decoder type \"{type}\"");
        }
    }

    /// <summary>Maps each token's characters back to bytes (GPT-2 table) and decodes the whole as UTF-8.</summary>
    private sealed class ByteLevelDecoding : DecodingStep
    {
        public override List<string> Apply(List<string> tokens)
        {
            var bytes = new List<byte>();
            foreach (string token in tokens)
            {
                ByteLevelAlphabet.AppendBytes(token, bytes);
            }

            return [Encoding.UTF8.GetString(bytes.ToArray())];
        }
    }

    /// <summary>Turns runs of &lt;0xXX&gt; tokens into text; an invalid UTF-8 run becomes one U+FFFD per byte.</summary>
    private sealed class ByteFallbackDecoding : DecodingStep
    {
        private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

        public override List<string> Apply(List<string> tokens)
        {
            var result = new List<string>(tokens.Count);
            var pending = new List<byte>();
            foreach (string token in tokens)
            {
                if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
                    && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.AllowHexSpecifier, null, out byte value))
                {
                    pending.Add(value);
                    continue;
                }

                Flush(pending, result);
                result.Add(token);
            }

            Flush(pending, result);
            return result;
        }

        private static void Flush(List<byte> pending, List<string> result)
        {
            if (pending.Count == 0)
            {
                return;
            }

            try
            {
                result.Add(StrictUtf8.GetString(pending.ToArray()));
            }
            catch (DecoderFallbackException)
            {
                result.AddRange(Enumerable.Repeat("\uFFFD", pending.Count));
            }

            pending.Clear();
        }
    }

    private sealed class FuseDecoding : DecodingStep
    {
        public override List<string> Apply(List<string> tokens) => [string.Concat(tokens)];
    }

    private sealed class ReplaceDecoding(Regex pattern, string content) : DecodingStep
    {
        public override List<string> Apply(List<string> tokens) => tokens.Select(t => pattern.Replace(t, _ => content)).ToList();
    }

    /// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing occurrences of a character from each token.</summary>
    private sealed class StripDecoding(char content, int start, int stop) : DecodingStep
    {
        public override List<string> Apply(List<string> tokens) => tokens.Select(Strip).ToList();

        private string Strip(string token)
        {
            int from = 0;
            while (from < start && from < token.Length && token[from] == content)
            {
                from++;
            }

            int to = token.Length;
            while (token.Length - to < stop && to > from && token[to - 1] == content)
            {
                to--;
            }

            return token[from..to];
        }
    }

    /// <summary>
    /// '▁' becomes a space, except in the first token, where Hugging Face drops it when a prefix was prepended.
    /// </summary>
    private sealed class MetaspaceDecoding(char replacement, bool dropInFirstToken) : DecodingStep
    {
        public override List<string> Apply(List<string> tokens)
            => tokens.Select((token, i) => i == 0 && dropInFirstToken
                ? token.Replace(replacement.ToString(), string.Empty, StringComparison.Ordinal)
                : token.Replace(replacement, ' ')).ToList();
    }
}
