using BenchmarkDotNet.Attributes;
using Engine.Autograd;

namespace Engine.Bench;

/// <summary>
/// Forward + backward of a linear layer with a frozen weight (the fine-tuning case): the base layer alone vs the fused LoRA
/// layer (rank 16, A and B trainable). Issue #4's target: LoRA r=16 adds at most 15 % on transformer shapes.
/// Throughput counts the base layer's two GEMMs (forward x Wᵀ, backward g W), so the LoRA row's lower figure is its overhead.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class LoraBenchmarks : IWorkload
{
    private const int Rank = 16;
    private Parameter weight = null!, loraA = null!, loraB = null!;
    private Variable input = null!;
    private Tensor outputGrad = null!;

    /// <summary>tokens × in → out.</summary>
    [Params("2048x1024x1024", "2048x1024x4096", "2048x4096x1024")]
    public string Shape { get; set; } = "";

    private static (int Tokens, int In, int Out) Parse(string shape)
    {
        var parts = shape.Split('x').Select(int.Parse).ToArray();
        return (parts[0], parts[1], parts[2]);
    }

    [GlobalSetup]
    public void Setup()
    {
        var (tokens, inFeatures, outFeatures) = Parse(Shape);
        using var untracked = TensorScope.Untracked();
        weight = new Parameter(Tensor.Normal([outFeatures, inFeatures], 0, 0.02, seed: 1), "w", trainable: false);
        loraA = new Parameter(Tensor.Uniform([Rank, inFeatures], -0.03, 0.03, seed: 2), "a");
        loraB = new Parameter(Tensor.Normal([outFeatures, Rank], 0, 0.02, seed: 3), "b");
        input = new Variable(Tensor.Normal([tokens, inFeatures], 0, 1, seed: 4), requiresGrad: true);
        outputGrad = Tensor.Normal([tokens, outFeatures], 0, 1, seed: 5);
    }

    [Benchmark(Baseline = true)]
    public void BaseLinear() => Run(() => Ops.Linear(input, weight));

    [Benchmark]
    public void LoraLinearRank16() => Run(() => Ops.LoraLinear(input, weight, loraA, loraB, scale: 2.0));

    private void Run(Func<Variable> forward)
    {
        using var scope = new TensorScope();
        using var tape = new Tape();
        tape.Backward(forward(), outputGrad);
        input.ClearGrad();
        loraA.ClearGrad();
        loraB.ClearGrad();
    }

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters)
    {
        var (tokens, inFeatures, outFeatures) = Parse((string)parameters[nameof(Shape)]);
        return (2.0 * 2 * tokens * inFeatures * outFeatures, "FLOP");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var variable in new Variable[] { weight, loraA, loraB, input })
        {
            variable.Dispose();
        }
        outputGrad.Dispose();
    }
}
