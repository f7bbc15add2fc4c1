namespace Engine.IO;

/// <summary>Writes that never leave a half-written file behind: write a temporary sibling, then rename over the target.</summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string contents) => Write(path, temporary => File.WriteAllText(temporary, contents));

    /// <summary>Runs <paramref name="writeTo"/> on a temporary path in the same folder, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> writeTo)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.tmp-{Guid.NewGuid():N}");
        try
        {
            writeTo(temporary);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }
        }
    }
}
