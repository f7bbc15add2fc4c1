using System.Text.RegularExpressions;
using Engine.Autograd;
using Engine.Model;
using Engine.Peft;
using Engine.Peft.Lora;
using Engine.Tests.Support;
using Engine.Training;
using Engine.Training.Data;

namespace Engine.Tests;

/// <summary>The README's embedding examples, compiled and run here; a second test checks the README still shows this exact code.</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void EmbeddingExampleRunsAndLearns()
    {
        // README-EXAMPLE-BEGIN
        var losses = new List<double>();
        using var weight = new Parameter(Tensor.Normal([1, 4], 0, 0.1, seed: 1), "weight");
        using var inputs = new Variable(Tensor.FromArray([1f, 2, 3, 4, 4, -3, 2, -1], 2, 4));
        using var targets = new Variable(Tensor.FromArray([10f, 2], 2, 1));
        for (int step = 0; step < 50; step++)
        {
            using var scope = new TensorScope();             // frees this step's tensors
            using var tape = new Tape();                     // records operations for backward
            var error = Ops.Sub(Ops.Linear(inputs, weight), targets);
            var loss = Ops.Mean(Ops.Square(error));
            tape.Backward(loss);                             // weight.Grad now holds dLoss/dWeight
            weight.Data.AddInPlace(weight.Grad!, -0.02);     // plain SGD step
            weight.ClearGrad();
            losses.Add(loss.Data.Item());
        }
        // README-EXAMPLE-END
        Assert.True(losses[^1] < losses[0] * 1e-6, $"loss went from {losses[0]} to {losses[^1]}");
    }

    [Fact]
    public void LoraExampleTrainsAndWritesAPeftAdapter()
    {
        using var folder = new TemporaryDirectory();
        string modelDirectory = RepositoryPaths.Fixture("llama-tiny");
        string dataPath = Path.Combine(folder.Path, "data.jsonl");
        string adapterDirectory = Path.Combine(folder.Path, "adapter");
        var random = new Random(3);
        File.WriteAllLines(dataPath, Enumerable.Range(0, 16).Select(_ => $"{{\"input_ids\": [{string.Join(", ", Enumerable.Range(0, 8).Select(_ => random.Next(48)))}]}}"));
        // README-EXAMPLE-BEGIN
        using var model = LlamaModel.Load(modelDirectory);
        var data = JsonlDataset.Load(dataPath, tokenizer: null);      // {"input_ids": [...]} lines; pass a tokenizer for text
        var batches = new BatcherSource(new Batcher(data, new BatcherOptions { BatchSize = 4, SequenceLength = 8 }));
        var lora = AdapterTraining.Fresh("lora", () => new LoraAdapter(new LoraOptions
        {
            Rank = 4, Alpha = 8, Targets = TargetModules.FromNames("q_proj", "v_proj"),
        }));
        using var trainer = new Trainer(model, lora, batches, new TrainingOptions { MaxSteps = 20, LearningRate = 1e-2 });
        var history = trainer.Train();                                 // the base stays frozen; only A and B train
        lora.SaveResult(model, adapterDirectory);                      // adapter_config.json + adapter_model.safetensors (peft)
        // README-EXAMPLE-END
        Assert.True(history[^1].Loss < history[0].Loss, $"loss went from {history[0].Loss} to {history[^1].Loss}");
        Assert.True(AdapterFiles.IsAdapterDirectory(adapterDirectory));
    }

    [Fact]
    public void ReadmeShowsTheTestedExamples()
    {
        string root = RepositoryPaths.Root;
        string source = File.ReadAllText(Path.Combine(root, "tests", "Engine.Tests", "ReadmeExampleTests.cs"));
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var matches = Regex.Matches(source, @"// README-EXAMPLE-BEGIN\r?\n(.*?)\s*// README-EXAMPLE-END", RegexOptions.Singleline);
        Assert.Equal(2, matches.Count);
        static string Normalize(string code) => string.Join("\n", code.Split('\n').Select(line => line.Trim()).Where(line => line.Length > 0));
        foreach (Match match in matches)
        {
            Assert.Contains(Normalize(match.Groups[1].Value), Normalize(readme));
        }
    }
}
