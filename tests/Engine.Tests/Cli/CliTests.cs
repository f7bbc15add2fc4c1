using System.Text.Json;
using Engine.Autograd;
using Engine.Cli;
using Engine.Model;
using Engine.Model.Tokenization;
using Engine.Tests.Support;
using Engine.Training;

namespace Engine.Tests.Cli;

/// <summary>A tiny tokenizer, data files and a model pretrained through the CLI, shared by the CLI tests.</summary>
public sealed class CliFixture : IDisposable
{
    private static readonly string[] Sentences =
    [
        "the cat sat on the mat .", "a dog ran to the park .", "the big dog lives in a red house .", "where does the cat live ?",
        "the cat lives in paris .", "a red cat sat in the park .", "the dog sat on a big mat .", "the house is blue .",
    ];

    private readonly TemporaryDirectory directory = new();

    public CliFixture()
    {
        WordTokenizer.Build(Sentences, maxVocabulary: 64).Save(Tokenizer);
        File.WriteAllLines(TextData, Sentences.Select(text => JsonSerializer.Serialize(new { text })));
        File.WriteAllLines(PromptData, Sentences.Select(text => JsonSerializer.Serialize(new { prompt = "question : say it . answer :", response = text })));
        Pretrain = CliRun.Invoke("pretrain", "--tokenizer", Tokenizer, "--data", TextData, "--out", Model, "--hidden", "16", "--layers", "1", "--heads", "2",
            "--max-positions", "64", "--steps", "3", "--batch-size", "2", "--seq-len", "16", "--eval-data", TextData, "--checkpoint-every", "0");
    }

    public string Root => directory.Path;

    public string Tokenizer => Path.Combine(Root, "tokenizer");

    public string TextData => Path.Combine(Root, "text.jsonl");

    public string PromptData => Path.Combine(Root, "prompt.jsonl");

    public string Model => Path.Combine(Root, "model");

    public CliRun Pretrain { get; }

    public void Dispose() => directory.Dispose();
}

/// <summary>One in-process run of the CLI with captured streams.</summary>
public sealed record CliRun(int ExitCode, string Stdout, string Stderr)
{
    public static CliRun Invoke(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exitCode = EngineCli.Run(args, stdout, stderr);
        return new CliRun(exitCode, stdout.ToString(), stderr.ToString());
    }

    public CliRun Succeeded()
    {
        Assert.True(ExitCode == 0, $"exit code {ExitCode}; stderr:\n{Stderr}");
        return this;
    }

    /// <summary>
    /// Exit code 1, nothing on stdout, and one error line holding every fragment: after it only the parse errors'
    /// "see 'engine ... --help'" hint (notes may come before it), and no stack trace.
    /// </summary>
    public void FailedWithOneLine(params string[] fragments)
    {
        Assert.True(ExitCode == EngineCli.ErrorExitCode, $"exit code {ExitCode}; stderr:\n{Stderr}");
        Assert.Empty(Stdout);
        var lines = Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int errorLine = Array.FindIndex(lines, line => line.StartsWith("error: ", StringComparison.Ordinal));
        Assert.True(errorLine >= 0, $"no error line in:\n{Stderr}");
        Assert.All(lines[(errorLine + 1)..], line => Assert.StartsWith("see 'engine", line));
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, lines[errorLine]);
        }
    }
}

public class CliTests(CliFixture fixture) : IClassFixture<CliFixture>
{
    [Fact]
    public void PretrainWritesAHuggingFaceFolderMetricsAndALossCurve()
    {
        fixture.Pretrain.Succeeded();
        foreach (string file in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json" })
        {
            Assert.True(File.Exists(Path.Combine(fixture.Model, file)), $"missing {file}");
        }
        var metrics = MetricsLog.Read(Path.Combine(fixture.Model, "metrics.csv"));
        Assert.Equal([1, 2, 3], metrics.Select(m => m.Step));
        Assert.NotNull(metrics[^1].EvalLoss);
        byte[] png = File.ReadAllBytes(Path.Combine(fixture.Model, "loss.png"));
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], png.Take(8));
        Assert.True(png.Length > 5000, $"loss.png has only {png.Length} bytes");
        Assert.Contains("step 3/3", fixture.Pretrain.Stderr);
    }

    [Fact]
    public void EvalJsonIsTheMeanLossOverEveryPredictedTokenOfEveryLine()
    {
        var run = CliRun.Invoke("eval", "--model", fixture.Model, "--data", fixture.TextData, "--json", "--batch-size", "3").Succeeded();
        using var json = JsonDocument.Parse(run.Stdout);
        double loss = json.RootElement.GetProperty("loss").GetDouble();
        long tokens = json.RootElement.GetProperty("tokens").GetInt64();

        // Directly: each line on its own as <s> text </s>; every token after <s> is predicted from those before it.
        var tokenizer = TokenizerLoader.Load(fixture.Model);
        using var model = LlamaModel.Load(fixture.Model);
        using var noGrad = GradMode.NoGrad();
        double weighted = 0;
        long expectedTokens = 0;
        foreach (string line in File.ReadLines(fixture.TextData))
        {
            using var scope = new TensorScope();
            int[] ids = [tokenizer.BosId!.Value, .. tokenizer.Encode(JsonDocument.Parse(line).RootElement.GetProperty("text").GetString()!), tokenizer.EosId!.Value];
            int[] targets = [.. ids.Skip(1), -100];
            double lineLoss = model.Loss(Tensor.FromArray<int>(ids, [1, ids.Length]), Tensor.FromArray<int>(targets, [1, ids.Length])).Data.Item();
            weighted += lineLoss * (ids.Length - 1);
            expectedTokens += ids.Length - 1;
        }
        Assert.Equal(expectedTokens, tokens);
        Assert.Equal(weighted / expectedTokens, loss, 1e-5);
        // The training run's final eval_loss measured the same file the same way.
        Assert.Equal(MetricsLog.Read(Path.Combine(fixture.Model, "metrics.csv"))[^1].EvalLoss!.Value, loss, 1e-5);
    }

    [Fact]
    public void GenerateCompletesThePrompt()
    {
        var run = CliRun.Invoke("generate", "--model", fixture.Model, "--prompt", "the cat", "--max-new-tokens", "6").Succeeded();
        var tokenizer = TokenizerLoader.Load(fixture.Model);
        using var model = LlamaModel.Load(fixture.Model);
        int[] prompt = [tokenizer.BosId!.Value, .. tokenizer.Encode("the cat")];
        var expected = Generation.Generate(model, prompt, new SamplingOptions { MaxNewTokens = 6, StopTokens = [tokenizer.EosId!.Value] });
        Assert.Equal(tokenizer.Decode(expected), run.Stdout.TrimEnd('\n', '\r'));
        Assert.NotEmpty(run.Stdout.Trim());
    }

    [Fact]
    public void TrainWithResumeContinuesTheInterruptedRunExactly()
    {
        // A constant learning rate makes a 2-step run the first half of a 4-step one (a decaying schedule depends on --steps).
        string[] Train(string output, int steps, params string[] extra) =>
            ["train", "--model", fixture.Model, "--data", fixture.PromptData, "--out", output, "--method", "full", "--steps", steps.ToString(),
             "--batch-size", "2", "--seq-len", "32", "--lr", "1e-3", "--schedule", "constant", "--warmup", "0", "--checkpoint-every", "1", .. extra];
        string uninterrupted = Path.Combine(fixture.Root, "train-uninterrupted");
        string resumed = Path.Combine(fixture.Root, "train-resumed");

        CliRun.Invoke(Train(uninterrupted, 4)).Succeeded();
        CliRun.Invoke(Train(resumed, 2)).Succeeded();
        var refused = CliRun.Invoke(Train(resumed, 4));
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("--resume", refused.Stderr);
        var resume = CliRun.Invoke(Train(resumed, 4, "--resume")).Succeeded();

        Assert.Contains("at step 2 of 4", resume.Stderr);
        Assert.Contains("padded", resume.Stderr);
        var expected = MetricsLog.Read(Path.Combine(uninterrupted, "metrics.csv"));
        var actual = MetricsLog.Read(Path.Combine(resumed, "metrics.csv"));
        Assert.Equal(expected.Select(m => m.Step), actual.Select(m => m.Step));
        Assert.Equal(expected.Select(m => m.Loss), actual.Select(m => m.Loss));
        Assert.True(File.Exists(Path.Combine(resumed, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(resumed, "loss.png")));
    }

    [Fact]
    public void MalformedDataExitsWithOneLineNamingTheFileAndLine()
    {
        string bad = Path.Combine(fixture.Root, "bad.jsonl");
        File.WriteAllLines(bad, ["{\"text\": \"the cat\"}", "{\"text\": \"the dog\""]);
        foreach (var args in new[]
        {
            new[] { "eval", "--model", fixture.Model, "--data", bad },
            new[] { "train", "--model", fixture.Model, "--data", bad, "--out", Path.Combine(fixture.Root, "bad-run"), "--seq-len", "16" },
        })
        {
            var run = CliRun.Invoke(args);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains($"{bad}, line 2:", run.Stderr);
            Assert.Single(run.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.DoesNotContain("   at ", run.Stderr);
        }
    }

    [Theory]
    [InlineData("unknown method", "--method must be one of full, lora, lora-sp, vblora, spiel-ag, spiel-ma (got ia3)", "train", "--method", "ia3")]
    [InlineData("missing file", "no such file", "eval", "--data", "missing.jsonl")]
    [InlineData("missing adapter", "--adapter adapter: no such folder", "eval", "--adapter", "adapter")]
    [InlineData("device", "not available in this build", "eval", "--device", "cuda")]
    public void BadInputExitsWithOneClearLine(string because, string expected, params string[] args)
    {
        string[] full = args[0] == "train"
            ? [.. args, "--model", fixture.Model, "--data", fixture.TextData, "--out", Path.Combine(fixture.Root, "never")]
            : [.. args, "--model", fixture.Model, .. args.Contains("--data") ? Array.Empty<string>() : ["--data", fixture.TextData]];
        var run = CliRun.Invoke(full);
        Assert.True(run.ExitCode == 1, because);
        run.FailedWithOneLine(expected);
    }
}
