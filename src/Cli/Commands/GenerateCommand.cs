using System.CommandLine;
using Engine.Model;
using Engine.Model.Tokenization;

namespace Engine.Cli.Commands;

/// <summary><c>engine generate</c>: completes a prompt (BOS first when the tokenizer has one; stops at EOS) and prints the completion.</summary>
internal static class GenerateCommand
{
    public static Command Create(CliContext cli)
    {
        var model = new Option<string>("--model") { Description = "The model folder (with its tokenizer.json).", Required = true, HelpName = "DIR" };
        var adapter = AdapterOption.Create();
        var prompt = new Option<string>("--prompt") { Description = "Text to complete.", Required = true, HelpName = "TEXT" };
        var maxNewTokens = new Option<int>("--max-new-tokens") { Description = "Most tokens to generate.", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0: greedy).", DefaultValueFactory = _ => 0.0 };
        var topK = new Option<int>("--top-k") { Description = "Sample among the k likeliest tokens (0: all).", DefaultValueFactory = _ => 0 };
        var topP = new Option<double>("--top-p") { Description = "Sample within the smallest set of tokens whose probability reaches p (1: all).", DefaultValueFactory = _ => 1.0 };
        OptionChecks.AtLeast(maxNewTokens, 1);
        OptionChecks.NotNegative(temperature);
        OptionChecks.AtLeast(topK, 0);
        OptionChecks.Check(topP, p => p > 0 && p <= 1, "must be in (0, 1]");

        var command = new Command("generate", "Complete a prompt with a model and print the completion.");
        foreach (Option option in new Option[] { model, adapter, prompt, maxNewTokens, temperature, topK, topP })
        {
            command.Options.Add(option);
        }

        command.SetAction(parse =>
        {
            var (device, seed) = cli.Prepare(parse);
            string modelDirectory = ModelFolder.Require(parse.GetRequiredValue(model), "--model");
            var tokenizer = TokenizerLoader.Load(modelDirectory);
            var ids = new List<int>();
            if (tokenizer.BosId is { } bos)
            {
                ids.Add(bos);
            }
            ids.AddRange(tokenizer.Encode(parse.GetRequiredValue(prompt)));
            if (ids.Count == 0)
            {
                throw new UsageException("--prompt: encodes to no tokens, and the tokenizer has no BOS to start from");
            }
            using var llama = AdapterOption.LoadModel(cli, modelDirectory, parse.GetValue(adapter), device);
            var generated = Generation.Generate(llama, ids, new SamplingOptions
            {
                MaxNewTokens = parse.GetValue(maxNewTokens),
                Temperature = parse.GetValue(temperature),
                TopK = parse.GetValue(topK),
                TopP = parse.GetValue(topP),
                Seed = (ulong)seed,
                StopTokens = tokenizer.EosId is { } eos ? [eos] : [],
            });
            cli.Out.WriteLine(tokenizer.Decode(generated));
            return 0;
        });
        return command;
    }
}
