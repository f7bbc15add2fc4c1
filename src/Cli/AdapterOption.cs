using System.CommandLine;
using Engine.Model;
using Engine.Peft;

namespace Engine.Cli;

/// <summary>--adapter of the inference commands: a peft adapter folder applied on top of --model.</summary>
internal static class AdapterOption
{
    public static Option<string?> Create() =>
        new("--adapter") { Description = "A LoRA, VB-LoRA or SpIEL (SFT) adapter folder (peft format) to apply on top of --model.", HelpName = "DIR" };

    /// <summary>
    /// Loads the model and, when an adapter is given, folds it into the weights (merge and unload): inference then runs at
    /// the base model's speed, with results equal to running the adapter unmerged up to float rounding.
    /// </summary>
    public static LlamaModel LoadModel(CliContext cli, string modelDirectory, string? adapterDirectory, Device device)
    {
        var llama = LlamaModel.Load(modelDirectory, device);
        if (adapterDirectory is null)
        {
            return llama;
        }
        try
        {
            Merge(cli, llama, adapterDirectory);
            return llama;
        }
        catch
        {
            llama.Dispose();
            throw;
        }
    }

    /// <summary>Attaches the adapter folder to <paramref name="llama"/> and merges it into the base weights.</summary>
    public static void Merge(CliContext cli, LlamaModel llama, string adapterDirectory)
    {
        if (!Directory.Exists(adapterDirectory))
        {
            throw new UsageException($"--adapter {adapterDirectory}: no such folder");
        }
        if (!AdapterFiles.IsAdapterDirectory(adapterDirectory))
        {
            throw new UsageException($"--adapter {adapterDirectory}: not an adapter folder (no {AdapterFiles.ConfigFileName})");
        }
        using var adapter = AdapterFiles.Load(adapterDirectory, llama);
        cli.Note($"adapter {adapterDirectory}: {adapter.PeftType} on {adapter.Modules.Count} modules, merged into the base weights");
        adapter.MergeAndUnload();
    }
}
