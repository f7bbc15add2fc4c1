using BenchmarkDotNet.Attributes;
using Engine.Autograd;

namespace Engine.Bench;

/// <summary>
/// Forward + backward of a linear layer with a frozen weight (the fine-tuning case): the base layer alone vs the fused LoRA
/// layer (rank 16, A and B trainable), and LoRA-SP at rank 16 with half frozen: element masks (A and B composed by
/// scatter-add each step) and rank-component masks (run at the live rank 8). Issue #4's target: LoRA r=16 adds at most 15 %.
/// Throughput counts the base layer's two GEMMs (forward x Wᵀ, backward g W), so the LoRA row's lower figure is its overhead.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class LoraBenchmarks : IWorkload
{
    private const int Rank = 16;
    private Parameter weight = null!, loraA = null!, loraB = null!;
    private Parameter frozenA = null!, frozenB = null!, trainableA = null!, trainableB = null!, liveA = null!, liveB = null!;
    private Tensor indicesA = null!, indicesB = null!;
    private Variable input = null!;
    private Tensor outputGrad = null!;

    /// <summary>tokens × in → out.</summary>
    [Params("2048x1024x1024", "2048x1024x4096", "2048x4096x1024")]
    public string Shape { get; set; } = "";

    /// <summary>"tokens x in x out", the shape notation of the linear-layer benchmarks.</summary>
    internal static (int Tokens, int In, int Out) Parse(string shape)
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
        // LoRA-SP, element masks: A and B composed as frozen + scatter(half of the entries) at every step.
        int[] EveryOther(long count) => Enumerable.Range(0, (int)(count / 2)).Select(i => 2 * i).ToArray();
        frozenA = new Parameter(loraA.Data.Clone(), "a.frozen", trainable: false);
        frozenB = new Parameter(loraB.Data.Clone(), "b.frozen", trainable: false);
        var halfA = EveryOther(loraA.Data.ElementCount);
        var halfB = EveryOther(loraB.Data.ElementCount);
        indicesA = Tensor.FromArray<int>(halfA, [halfA.Length]);
        indicesB = Tensor.FromArray<int>(halfB, [halfB.Length]);
        trainableA = new Parameter(Tensor.Normal([halfA.Length], 0, 0.02, seed: 6), "a.trainable");
        trainableB = new Parameter(Tensor.Normal([halfB.Length], 0, 0.02, seed: 7), "b.trainable");
        // LoRA-SP, rank-component masks drawn once: the frozen half of the components adds nothing, so the layer runs at r/2.
        liveA = new Parameter(Tensor.Uniform([Rank / 2, inFeatures], -0.03, 0.03, seed: 8), "a.live");
        liveB = new Parameter(Tensor.Normal([outFeatures, Rank / 2], 0, 0.02, seed: 9), "b.live");
        outputGrad = Tensor.Normal([tokens, outFeatures], 0, 1, seed: 5);
    }

    [Benchmark(Baseline = true)]
    public void BaseLinear() => Run(() => Ops.Linear(input, weight));

    [Benchmark]
    public void LoraLinearRank16() => Run(() => Ops.LoraLinear(input, weight, loraA, loraB, scale: 2.0));

    [Benchmark]
    public void LoraSpElementRank16() => Run(() => Ops.LoraLinear(input, weight,
        Ops.ScatterAddFlat(frozenA, indicesA, trainableA), Ops.ScatterAddFlat(frozenB, indicesB, trainableB), scale: 2.0));

    [Benchmark]
    public void LoraSpRowRank16() => Run(() => Ops.LoraLinear(input, weight, liveA, liveB, scale: 2.0));

    private void Run(Func<Variable> forward)
    {
        using var scope = new TensorScope();
        using var tape = new Tape();
        tape.Backward(forward(), outputGrad);
        foreach (var variable in new Variable[] { input, loraA, loraB, trainableA, trainableB, liveA, liveB })
        {
            variable.ClearGrad();
        }
    }

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters)
    {
        var (tokens, inFeatures, outFeatures) = Parse((string)parameters[nameof(Shape)]);
        return (2.0 * 2 * tokens * inFeatures * outFeatures, "FLOP");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var variable in new Variable[] { weight, loraA, loraB, input, frozenA, frozenB, trainableA, trainableB, liveA, liveB })
        {
            variable.Dispose();
        }
        outputGrad.Dispose();
        indicesA.Dispose();
        indicesB.Dispose();
    }
}
