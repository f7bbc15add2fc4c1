using BenchmarkDotNet.Attributes;
using Engine.Cpu;

namespace Engine.Bench;

/// <summary>Memory-bound row kernels: softmax, RMSNorm, fused cross-entropy. Throughput counts bytes read + written once.</summary>
[Config(typeof(ThroughputConfig))]
public class RowKernelBenchmarks : IWorkload
{
    private Tensor input = null!, output = null!, weight = null!, inverseRms = null!, targets = null!, rowLoss = null!, rowWeight = null!, logSumExp = null!;

    /// <summary>rows × width: activations (hidden 1024/4096) and logits (vocabulary 32000).</summary>
    [Params("8192x1024", "2048x4096", "512x32000")]
    public string Shape { get; set; } = "";

    private (int Rows, int Width) Size => (int.Parse(Shape.Split('x')[0]), int.Parse(Shape.Split('x')[1]));

    [GlobalSetup]
    public void Setup()
    {
        var (rows, width) = Size;
        using var untracked = TensorScope.Untracked();
        input = Tensor.Normal([rows, width], 0, 1, seed: 1);
        output = Tensor.Empty([rows, width]);
        weight = Tensor.Normal([width], 1, 0.1, seed: 2);
        inverseRms = Tensor.Empty([rows]);
        targets = Tensor.FromArray(Enumerable.Range(0, rows).Select(i => i * 7919 % width).ToArray(), rows);
        rowLoss = Tensor.Empty([rows]);
        rowWeight = Tensor.Empty([rows]);
        logSumExp = Tensor.Empty([rows]);
    }

    /// <summary>The ceiling for the kernels below: a plain parallel copy of the same bytes.</summary>
    [Benchmark(Baseline = true)]
    public void Copy() => CpuBackend.Instance.Copy(input, output);

    [Benchmark]
    public void Softmax() => CpuBackend.Instance.Softmax(input, output, log: false);

    [Benchmark]
    public void RmsNorm() => CpuBackend.Instance.RmsNorm(input, weight, 1e-5, output, inverseRms);

    [Benchmark]
    public void RmsNormBackward() => CpuBackend.Instance.RmsNormBackward(input, weight, inverseRms, input, output, null);

    [Benchmark]
    public void CrossEntropy() => CpuBackend.Instance.CrossEntropy(input, targets, -100, rowLoss, rowWeight, logSumExp);

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters)
    {
        var shape = ((string)parameters[nameof(Shape)]).Split('x');
        double elements = double.Parse(shape[0]) * double.Parse(shape[1]);
        double passes = method switch
        {
            nameof(CrossEntropy) => 1,      // reads the logits once
            nameof(RmsNormBackward) => 3,   // reads x and dy, writes dx
            _ => 2,                         // reads x, writes y
        };
        return (elements * 4 * passes, "B");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var tensor in new[] { input, output, weight, inverseRms, targets, rowLoss, rowWeight, logSumExp })
        {
            tensor.Dispose();
        }
    }
}
