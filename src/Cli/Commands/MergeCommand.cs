using System.CommandLine;
using Engine.Model;

namespace Engine.Cli.Commands;

/// <summary><c>engine merge</c>: folds an adapter into its base model and writes an ordinary Hugging Face model folder.</summary>
internal static class MergeCommand
{
    public static Command Create(CliContext cli)
    {
        var model = new Option<string>("--model") { Description = "The base model folder the adapter was trained on.", Required = true, HelpName = "DIR" };
        var adapter = new Option<string>("--adapter") { Description = "The adapter folder (peft format: LoRA, LoRA-SP, VB-LoRA or SpIEL's SFT).", Required = true, HelpName = "DIR" };
        var output = new Option<string>("--out") { Description = "Where the merged model goes (config.json, model.safetensors, tokenizer files).", Required = true, HelpName = "DIR" };

        var command = new Command("merge", "Merge an adapter into its base model (W += ΔW) and save the result as a Hugging Face model folder.");
        foreach (Option option in new Option[] { model, adapter, output })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            var (device, _) = cli.Prepare(parse);
            string modelDirectory = ModelFolder.Require(parse.GetRequiredValue(model), "--model");
            string outputDirectory = parse.GetRequiredValue(output);
            if (SameFolder(outputDirectory, modelDirectory))
            {
                throw new UsageException($"--out {outputDirectory}: is the base model's folder; write the merged model elsewhere so the base stays intact");
            }
            if (SameFolder(outputDirectory, parse.GetRequiredValue(adapter)))
            {
                throw new UsageException($"--out {outputDirectory}: is the adapter's folder; write the merged model elsewhere so the adapter stays intact");
            }
            using var llama = AdapterOption.LoadModel(cli, modelDirectory, parse.GetRequiredValue(adapter), device);
            Directory.CreateDirectory(outputDirectory);
            llama.Save(outputDirectory);
            ModelFolder.CopyTokenizer(modelDirectory, outputDirectory);
            cli.Out.WriteLine($"merged model ({llama.ParameterCount:N0} parameters) saved to {outputDirectory}");
            return 0;
        });
        return command;
    }

    private static bool SameFolder(string first, string second) =>
        Path.GetFullPath(first).TrimEnd(Path.DirectorySeparatorChar) == Path.GetFullPath(second).TrimEnd(Path.DirectorySeparatorChar);
}
