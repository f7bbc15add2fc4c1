using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Engine.Model.Tokenization;

/// <summary>
/// One stage of a tokenizer.json "pre_tokenizer": splits a piece of text into smaller pieces (words) that the
/// model encodes independently. Stages that only select regex matches run on the library's
/// <see cref="PreTokenizer"/> classes; Hugging Face's split behaviours and Metaspace's text rewriting cannot be
/// expressed as a library pre-tokenizer (which only reports match offsets) and are implemented here.
/// </summary>
internal abstract class PreTokenizationStep
{
    /// <param name="piece">The piece to split.</param>
    /// <param name="isTextStart">Whether the piece starts the whole input (Metaspace's "first" prepend scheme).</param>
    /// <param name="output">Receives the non-empty pieces in order.</param>
    public abstract void Split(string piece, bool isTextStart, List<string> output);
}

/// <summary>The pre-tokenizer stages of one tokenizer.json and whether they end in a ByteLevel stage.</summary>
internal sealed record PreTokenization(IReadOnlyList<PreTokenizationStep> Steps, bool ByteLevel)
{
    /// <summary>GPT-2's word pattern, used by the ByteLevel pre-tokenizer when "use_regex" is true.</summary>
    private const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public static PreTokenization FromJson(TokenizerFile file, JsonElement? spec, string field)
    {
        var steps = new List<PreTokenizationStep>();
        bool byteLevel = spec is JsonElement element && Add(file, element, field, steps, isLast: true);
        return new PreTokenization(steps, byteLevel);
    }

    /// <summary>Splits <paramref name="text"/> with every stage in turn.</summary>
    public List<string> Split(string text, bool isTextStart)
    {
        var pieces = new List<string> { text };
        foreach (PreTokenizationStep step in Steps)
        {
            var next = new List<string>(pieces.Count * 2);
            for (int i = 0; i < pieces.Count; i++)
            {
                step.Split(pieces[i], isTextStart && i == 0, next);
            }

            pieces = RejoinSurrogatePairs(next);
        }

        return pieces;
    }

    /// <summary>
    /// .NET regexes match UTF-16 units, so a single-character class such as [^\s\p{L}] takes an emoji's two surrogates
    /// as two matches where Hugging Face's (Rust) regex takes one code point; this joins such halves again.
    /// (Letters and digits outside the BMP remain a difference: for .NET they are not \p{L} or \p{N}.)
    /// </summary>
    private static List<string> RejoinSurrogatePairs(List<string> pieces)
    {
        for (int i = pieces.Count - 1; i > 0; i--)
        {
            if (char.IsHighSurrogate(pieces[i - 1][^1]) && char.IsLowSurrogate(pieces[i][0]))
            {
                pieces[i - 1] += pieces[i];
                pieces.RemoveAt(i);
            }
        }

        return pieces;
    }

    /// <returns>Whether the entry is (or ends in) a ByteLevel stage.</returns>
    private static bool Add(TokenizerFile file, JsonElement spec, string field, List<PreTokenizationStep> steps, bool isLast)
    {
        string type = file.RequireString(spec, "type", field + ".type");
        switch (type)
        {
            case "Sequence":
                JsonElement items = file.RequireArray(spec, "pretokenizers", field + ".pretokenizers");
                int count = items.GetArrayLength();
                bool endsByteLevel = false;
                int index = 0;
                foreach (JsonElement item in items.EnumerateArray())
                {
                    endsByteLevel = Add(file, item, $"{field}.pretokenizers[{index}]", steps, isLast && index == count - 1);
                    index++;
                }

                return endsByteLevel;
            case "ByteLevel":
                // Byte-to-character mapping happens inside the library's BPE model, so nothing may follow it.
                if (!isLast)
                {
                    throw file.Unsupported(field, "a ByteLevel pre-tokenizer followed by other pre-tokenizers");
                }

                bool useRegex = file.GetBool(spec, "use_regex", field + ".use_regex", fallback: true);
                steps.Add(new ByteLevelStep(
                    file.GetBool(spec, "add_prefix_space", field + ".add_prefix_space", fallback: true),
                    useRegex ? new RegexPreTokenizer(new Regex(Gpt2Pattern, RegexOptions.CultureInvariant), null) : null));
                return true;
            case "Whitespace":
                // Hugging Face's Whitespace keeps the matches of \w+|[^\w\s]+, exactly the library's WordOrNonWord.
                steps.Add(new LibraryStep(PreTokenizer.CreateWordOrNonWord()));
                return false;
            case "WhitespaceSplit":
                steps.Add(new LibraryStep(PreTokenizer.CreateWhiteSpace()));
                return false;
            case "Split":
                steps.Add(SplitStep(file, spec, field));
                return false;
            case "Digits":
                bool individual = file.GetBool(spec, "individual_digits", field + ".individual_digits", fallback: false);
                steps.Add(new PatternSplitStep(new Regex(@"\p{N}", RegexOptions.CultureInvariant),
                    individual ? SplitBehavior.Isolated : SplitBehavior.Contiguous, invert: false));
                return false;
            case "Metaspace":
                steps.Add(MetaspaceStep.FromJson(file, spec, field));
                return false;
            default:
                throw file.Unsupported(field + ".type", $"pre-tokenizer type \"{type}\"");
        }
    }

    private static PreTokenizationStep SplitStep(TokenizerFile file, JsonElement spec, string field)
    {
        Regex pattern = file.RequirePattern(spec, "pattern", field + ".pattern");
        string behaviorName = file.RequireString(spec, "behavior", field + ".behavior");
        bool invert = file.GetBool(spec, "invert", field + ".invert", fallback: false);
        SplitBehavior behavior = behaviorName switch
        {
            "Removed" => SplitBehavior.Removed,
            "Isolated" => SplitBehavior.Isolated,
            "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
            "MergedWithNext" => SplitBehavior.MergedWithNext,
            "Contiguous" => SplitBehavior.Contiguous,
            _ => throw file.Unsupported(field + ".behavior", $"split behavior \"{behaviorName}\""),
        };

        // "Keep only the matches" is what the library's RegexPreTokenizer does.
        return behavior == SplitBehavior.Removed && invert
            ? new LibraryStep(new RegexPreTokenizer(pattern, null))
            : new PatternSplitStep(pattern, behavior, invert);
    }
}

/// <summary>Hugging Face's <c>SplitDelimiterBehavior</c>, spelled as in tokenizer.json.</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

/// <summary>Keeps the pieces a library pre-tokenizer reports (offset, length) for.</summary>
internal sealed class LibraryStep(PreTokenizer preTokenizer) : PreTokenizationStep
{
    public override void Split(string piece, bool isTextStart, List<string> output)
    {
        foreach ((int offset, int length) in preTokenizer.PreTokenize(piece))
        {
            output.Add(piece.Substring(offset, length));
        }
    }
}

/// <summary>
/// The ByteLevel pre-tokenizer's splitting part: an optional leading space, then GPT-2's regex. The byte-to-character
/// mapping itself is done by the library's BPE model (<c>BpeOptions.ByteLevel</c>).
/// </summary>
internal sealed class ByteLevelStep(bool addPrefixSpace, RegexPreTokenizer? words) : PreTokenizationStep
{
    public override void Split(string piece, bool isTextStart, List<string> output)
    {
        string text = addPrefixSpace && !piece.StartsWith(' ') ? " " + piece : piece;
        if (words is null)
        {
            output.Add(text);
            return;
        }

        foreach ((int offset, int length) in words.PreTokenize(text))
        {
            output.Add(text.Substring(offset, length));
        }
    }
}

/// <summary>Hugging Face's <c>NormalizedString::split</c>: cuts at pattern matches with the given delimiter behaviour.</summary>
internal sealed class PatternSplitStep(Regex pattern, SplitBehavior behavior, bool invert) : PreTokenizationStep
{
    public override void Split(string piece, bool isTextStart, List<string> output)
    {
        // Cover the piece with (start, end, isDelimiter) spans: matches and the gaps between them.
        var spans = new List<(int Start, int End, bool IsDelimiter)>();
        int position = 0;
        foreach (ValueMatch match in pattern.EnumerateMatches(piece))
        {
            if (match.Length == 0)
            {
                continue;
            }

            if (match.Index > position)
            {
                spans.Add((position, match.Index, invert));
            }

            spans.Add((match.Index, match.Index + match.Length, !invert));
            position = match.Index + match.Length;
        }

        if (position < piece.Length)
        {
            spans.Add((position, piece.Length, invert));
        }

        foreach ((int start, int end) in Combine(spans))
        {
            output.Add(piece[start..end]);
        }
    }

    private List<(int Start, int End)> Combine(List<(int Start, int End, bool IsDelimiter)> spans)
    {
        var pieces = new List<(int Start, int End)>(spans.Count);
        bool previousWasDelimiter = false;
        switch (behavior)
        {
            case SplitBehavior.Removed:
                pieces.AddRange(spans.Where(s => !s.IsDelimiter).Select(s => (s.Start, s.End)));
                break;
            case SplitBehavior.Isolated:
                pieces.AddRange(spans.Select(s => (s.Start, s.End)));
                break;
            case SplitBehavior.MergedWithPrevious:
                foreach ((int start, int end, bool isDelimiter) in spans)
                {
                    if (isDelimiter && !previousWasDelimiter && pieces.Count > 0)
                    {
                        pieces[^1] = (pieces[^1].Start, end);
                    }
                    else
                    {
                        pieces.Add((start, end));
                    }

                    previousWasDelimiter = isDelimiter;
                }

                break;
            case SplitBehavior.MergedWithNext:
                // Hugging Face folds from the end: a delimiter joins the piece after it.
                for (int i = spans.Count - 1; i >= 0; i--)
                {
                    (int start, int end, bool isDelimiter) = spans[i];
                    if (isDelimiter && !previousWasDelimiter && pieces.Count > 0)
                    {
                        pieces[^1] = (start, pieces[^1].End);
                    }
                    else
                    {
                        pieces.Add((start, end));
                    }

                    previousWasDelimiter = isDelimiter;
                }

                pieces.Reverse();
                break;
            case SplitBehavior.Contiguous:
                foreach ((int start, int end, bool isDelimiter) in spans)
                {
                    if (isDelimiter == previousWasDelimiter && pieces.Count > 0)
                    {
                        pieces[^1] = (pieces[^1].Start, end);
                    }
                    else
                    {
                        pieces.Add((start, end));
                    }

                    previousWasDelimiter = isDelimiter;
                }

                break;
        }

        return pieces;
    }
}

/// <summary>
/// SentencePiece's whitespace convention as a pre-tokenizer: spaces become the replacement character ('▁'), which
/// is prepended per the prepend scheme; with "split", every '▁' starts a new piece.
/// </summary>
internal sealed class MetaspaceStep(char replacement, MetaspaceStep.PrependScheme prependScheme, bool split) : PreTokenizationStep
{
    internal enum PrependScheme
    {
        Always,
        First,
        Never,
    }

    private readonly PatternSplitStep _splitter = new(new Regex(Regex.Escape(replacement.ToString())), SplitBehavior.MergedWithNext, invert: false);

    public static MetaspaceStep FromJson(TokenizerFile file, JsonElement spec, string field)
        => new(ReadReplacement(file, spec, field), ReadPrependScheme(file, spec, field), file.GetBool(spec, "split", field + ".split", fallback: true));

    public static char ReadReplacement(TokenizerFile file, JsonElement spec, string field)
    {
        string replacement = file.GetString(spec, "replacement", field + ".replacement") ?? "\u2581";
        return replacement.Length == 1 ? replacement[0] : throw file.Unsupported(field + ".replacement", $"a replacement of {replacement.Length} UTF-16 units");
    }

    /// <summary>Reads "prepend_scheme", or the pre-0.19 "add_prefix_space" it replaced.</summary>
    public static PrependScheme ReadPrependScheme(TokenizerFile file, JsonElement spec, string field)
    {
        string? scheme = file.GetString(spec, "prepend_scheme", field + ".prepend_scheme");
        if (scheme is null)
        {
            return file.GetBool(spec, "add_prefix_space", field + ".add_prefix_space", fallback: true) ? PrependScheme.Always : PrependScheme.Never;
        }

        return scheme switch
        {
            "always" => PrependScheme.Always,
            "first" => PrependScheme.First,
            "never" => PrependScheme.Never,
            _ => throw file.Unsupported(field + ".prepend_scheme", $"prepend scheme \"{scheme}\""),
        };
    }

    public override void Split(string piece, bool isTextStart, List<string> output)
    {
        string text = piece.Replace(' ', replacement);
        bool prepend = !text.StartsWith(replacement) && (prependScheme == PrependScheme.Always || (prependScheme == PrependScheme.First && isTextStart));
        if (prepend)
        {
            text = replacement + text;
        }

        if (split)
        {
            _splitter.Split(text, isTextStart, output);
        }
        else
        {
            output.Add(text);
        }
    }
}
