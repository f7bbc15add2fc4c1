using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Engine.Model.Tokenization;

/// <summary>One entry of tokenizer.json's "added_tokens".</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord = false, bool LeftStrip = false, bool RightStrip = false);

/// <summary>A stretch of input: either an added token (<see cref="TokenId"/> set) or text for the model.</summary>
internal readonly record struct TextSegment(int Start, string Text, int? TokenId);

/// <summary>
/// Finds added tokens (e.g. "&lt;s&gt;", "&lt;|eot_id|&gt;") in raw text so the model never splits them, as Hugging Face's
/// AddedVocabulary does. Unlike Hugging Face, tokens marked "normalized" are also matched in the raw text, which
/// only differs when the normalizer changes a token's spelling.
/// </summary>
internal sealed class AddedTokenSplitter
{
    private readonly Regex? _pattern;
    private readonly AddedToken[] _byGroup;

    public AddedTokenSplitter(IEnumerable<AddedToken> tokens)
    {
        // Longest first: .NET takes the first alternative that matches, Hugging Face the longest token.
        _byGroup = tokens.Where(t => t.Content.Length > 0).OrderByDescending(t => t.Content.Length).ToArray();
        if (_byGroup.Length > 0)
        {
            _pattern = new Regex(string.Join('|', _byGroup.Select(Alternative)), RegexOptions.CultureInvariant);
        }
    }

    public IEnumerable<TextSegment> Split(string text)
    {
        int position = 0;
        if (_pattern is not null)
        {
            for (Match match = _pattern.Match(text); match.Success; match = match.NextMatch())
            {
                if (match.Index > position)
                {
                    yield return new TextSegment(position, text[position..match.Index], null);
                }

                yield return new TextSegment(match.Index, match.Value, MatchedToken(match).Id);
                position = match.Index + match.Length;
            }
        }

        if (position < text.Length)
        {
            yield return new TextSegment(position, text[position..], null);
        }
    }

    private AddedToken MatchedToken(Match match)
    {
        for (int group = 1; group < match.Groups.Count; group++)
        {
            if (match.Groups[group].Success)
            {
                return _byGroup[group - 1];
            }
        }

        throw new UnreachableException("Every alternative of the pattern is a group.");
    }

    private static string Alternative(AddedToken token)
        => "("
           + (token.SingleWord ? @"(?<!\w)" : "")
           + (token.LeftStrip ? @"\s*" : "")
           + Regex.Escape(token.Content)
           + (token.RightStrip ? @"\s*" : "")
           + (token.SingleWord ? @"(?!\w)" : "")
           + ")";
}
