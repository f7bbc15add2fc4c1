using BenchmarkDotNet.Attributes;
using Engine.Autograd;
using Engine.Cpu;

namespace Engine.Bench;

/// <summary>
/// SpIEL's sparse-delta linear layer at density 1 %, forward + backward with a frozen W and trainable values (x needs a
/// gradient too, as inside a model), against the plain linear layer; and the values' gradient alone: the sampled
/// gradient (SDDMM) against the reference's dense gᵀx followed by a gather. Throughput counts the base layer's two GEMMs
/// for the layers and 2·T·k FLOP (the k dot products) for the gradients.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class SparseDeltaBenchmarks : IWorkload
{
    private const double Density = 0.01;
    private Parameter weight = null!, values = null!;
    private Variable input = null!;
    private Tensor indices = null!, outputGrad = null!, sampledGrad = null!, denseGrad = null!;

    /// <summary>tokens × in → out.</summary>
    [Params("2048x1024x1024", "2048x4096x1024")]
    public string Shape { get; set; } = "";

    private static int DeltaCount(int inFeatures, int outFeatures) => (int)(Density * inFeatures * outFeatures);

    [GlobalSetup]
    public void Setup()
    {
        var (tokens, inFeatures, outFeatures) = LoraBenchmarks.Parse(Shape);
        int deltaCount = DeltaCount(inFeatures, outFeatures);
        using var untracked = TensorScope.Untracked();
        weight = new Parameter(Tensor.Normal([outFeatures, inFeatures], 0, 0.02, seed: 1), "w", trainable: false);
        // SpIEL's initial indices: uniform random and unique.
        var random = new Random(2);
        var chosen = new HashSet<int>();
        while (chosen.Count < deltaCount)
        {
            chosen.Add(random.Next(outFeatures * inFeatures));
        }
        indices = Tensor.FromArray<int>(chosen.ToArray(), deltaCount);
        values = new Parameter(Tensor.Normal([deltaCount], 0, 0.001, seed: 3), "values");
        input = new Variable(Tensor.Normal([tokens, inFeatures], 0, 1, seed: 4), requiresGrad: true);
        outputGrad = Tensor.Normal([tokens, outFeatures], 0, 1, seed: 5);
        sampledGrad = Tensor.Empty([deltaCount]);
        denseGrad = Tensor.Empty([outFeatures, inFeatures]);
    }

    [Benchmark(Baseline = true)]
    public void BaseLinear() => Run(() => Ops.Linear(input, weight));

    [Benchmark]
    public void SparseDeltaLinear() => Run(() => Ops.SparseDeltaLinear(input, weight, indices, values));

    [Benchmark]
    public void SampledWeightGradient() => CpuBackend.Instance.SampledWeightGradient(outputGrad, input.Data, indices, sampledGrad, 0);

    [Benchmark]
    public void DenseWeightGradientThenGather()
    {
        using var gradientTransposed = outputGrad.Transpose(0, 1);
        CpuBackend.Instance.MatMul(gradientTransposed, input.Data, denseGrad, 1, 0);
        CpuBackend.Instance.GatherFlat(denseGrad, indices, sampledGrad);
    }

    private void Run(Func<Variable> forward)
    {
        using var scope = new TensorScope();
        using var tape = new Tape();
        tape.Backward(forward(), outputGrad);
        input.ClearGrad();
        values.ClearGrad();
    }

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters)
    {
        var (tokens, inFeatures, outFeatures) = LoraBenchmarks.Parse((string)parameters[nameof(Shape)]);
        return method is nameof(SampledWeightGradient) or nameof(DenseWeightGradientThenGather)
            ? (2.0 * tokens * DeltaCount(inFeatures, outFeatures), "FLOP")
            : (2.0 * 2 * tokens * inFeatures * outFeatures, "FLOP");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var variable in new Variable[] { weight, values, input })
        {
            variable.Dispose();
        }
        foreach (var tensor in new[] { indices, outputGrad, sampledGrad, denseGrad })
        {
            tensor.Dispose();
        }
    }
}

/// <summary>
/// SpIEL's selections: the top 1 % of a weight-shaped score matrix by magnitude (drop and regrow), for a Llama MLP-like
/// 1024×4096 and Llama-7B's 4096×11008 (45M entries). Throughput is the bytes of one read of the scores.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class SparseDeltaTopKBenchmarks : IWorkload
{
    private Tensor scores = null!, resultIndices = null!;

    /// <summary>rows × columns of the score matrix.</summary>
    [Params("1024x4096", "4096x11008")]
    public string Shape { get; set; } = "";

    private static long Count(string shape) => shape.Split('x').Select(long.Parse).Aggregate((rows, columns) => rows * columns);

    [GlobalSetup]
    public void Setup()
    {
        var size = Shape.Split('x').Select(int.Parse).ToArray();
        using var untracked = TensorScope.Untracked();
        scores = Tensor.Normal(size, 0, 1, seed: 6);
        resultIndices = Tensor.Empty([(int)(Count(Shape) / 100)], DType.Int32);
    }

    [Benchmark]
    public void TopKIndices() => CpuBackend.Instance.TopKIndices(scores, resultIndices.Dim(0), absolute: true, resultIndices);

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) =>
        (4.0 * Count((string)parameters[nameof(Shape)]), "B");

    [GlobalCleanup]
    public void Cleanup()
    {
        scores.Dispose();
        resultIndices.Dispose();
    }
}
