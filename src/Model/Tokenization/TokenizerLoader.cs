namespace Engine.Model.Tokenization;

/// <summary>Opens the tokenizer stored in a model folder (or a tokenizer.json file directly).</summary>
public static class TokenizerLoader
{
    public const string TokenizerFileName = "tokenizer.json";

    /// <summary>
    /// Loads <paramref name="directoryOrFile"/>: a <see cref="WordTokenizer"/> when the file was written by
    /// <see cref="WordTokenizer.Save"/> (so decoding keeps its punctuation spacing), otherwise a
    /// <see cref="HuggingFaceTokenizer"/>.
    /// </summary>
    /// <exception cref="FileNotFoundException">Neither a tokenizer.json file nor a folder holding one.</exception>
    /// <exception cref="InvalidDataException">The file is malformed; the message names the file and field.</exception>
    /// <exception cref="NotSupportedException">The file uses an unsupported feature; the message names the file and field.</exception>
    public static ITextTokenizer Load(string directoryOrFile)
    {
        using TokenizerFile file = TokenizerFile.Open(ResolveTokenizerJson(directoryOrFile));
        return WordTokenizer.IsWordTokenizerFile(file) ? WordTokenizer.FromFile(file) : HuggingFaceTokenizer.FromFile(file);
    }

    internal static string ResolveTokenizerJson(string directoryOrFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(directoryOrFile);
        if (File.Exists(directoryOrFile))
        {
            return directoryOrFile;
        }

        if (Directory.Exists(directoryOrFile))
        {
            string path = Path.Combine(directoryOrFile, TokenizerFileName);
            return File.Exists(path) ? path : throw new FileNotFoundException($"{directoryOrFile} holds no {TokenizerFileName}.", path);
        }

        throw new FileNotFoundException($"No tokenizer file or folder at {directoryOrFile}.", directoryOrFile);
    }
}
