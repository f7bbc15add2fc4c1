using System.Text.RegularExpressions;
using Engine.Autograd;

namespace Engine.Tests;

/// <summary>The README's embedding example, compiled and run here; a second test checks the README still shows this exact code.</summary>
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
    public void ReadmeShowsTheTestedExample()
    {
        string root = Support.RepositoryPaths.Root;
        string source = File.ReadAllText(Path.Combine(root, "tests", "Engine.Tests", "ReadmeExampleTests.cs"));
        string readme = File.ReadAllText(Path.Combine(root, "README.md"));
        var match = Regex.Match(source, @"// README-EXAMPLE-BEGIN\r?\n(.*?)\s*// README-EXAMPLE-END", RegexOptions.Singleline);
        Assert.True(match.Success);
        static string Normalize(string code) => string.Join("\n", code.Split('\n').Select(line => line.Trim()).Where(line => line.Length > 0));
        Assert.Contains(Normalize(match.Groups[1].Value), Normalize(readme));
    }
}
