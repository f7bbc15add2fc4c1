using Engine.IO;
using Engine.Model.Tokenization;

namespace Engine.Cli;

/// <summary>The parts of a Hugging Face model folder the commands read and write besides the weights.</summary>
internal static class ModelFolder
{
    /// <summary>Tokenizer files carried over into an output model folder when present.</summary>
    private static readonly string[] TokenizerFiles = [TokenizerLoader.TokenizerFileName, "tokenizer_config.json", "special_tokens_map.json"];

    /// <summary>Fails with one line naming the folder when it is missing or holds no config.json.</summary>
    public static string Require(string directory, string flag)
    {
        if (!Directory.Exists(directory))
        {
            throw new UsageException($"{flag} {directory}: no such folder");
        }
        if (!File.Exists(Path.Combine(directory, "config.json")))
        {
            throw new UsageException($"{flag} {directory}: not a model folder (no config.json)");
        }
        return directory;
    }

    public static string RequireFile(string path, string flag) =>
        File.Exists(path) ? path : throw new UsageException($"{flag} {path}: no such file");

    /// <summary>The folder's tokenizer, or null when it has none (pre-tokenized data needs none).</summary>
    public static ITextTokenizer? TryLoadTokenizer(string directory) =>
        File.Exists(Path.Combine(directory, TokenizerLoader.TokenizerFileName)) ? TokenizerLoader.Load(directory) : null;

    /// <summary>Copies the tokenizer files of <paramref name="source"/> (a folder, or a tokenizer.json file) into <paramref name="directory"/>, each atomically.</summary>
    public static void CopyTokenizer(string source, string directory)
    {
        (string From, string Name)[] files = File.Exists(source)
            ? [(source, TokenizerLoader.TokenizerFileName)]
            : TokenizerFiles.Select(name => (Path.Combine(source, name), name)).Where(file => File.Exists(file.Item1)).ToArray();
        foreach (var (from, name) in files)
        {
            string to = Path.Combine(directory, name);
            if (Path.GetFullPath(from) != Path.GetFullPath(to))
            {
                AtomicFile.Write(to, stream =>
                {
                    using var input = File.OpenRead(from);
                    input.CopyTo(stream);
                });
            }
        }
    }
}
