using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Engine.Cpu.Kernels;

namespace Engine.Bench;

/// <summary>
/// SGEMM throughput: the engine's optimized kernel against OpenBLAS (cblas_sgemm), both on 2 threads; the Throughput
/// column shows GFLOP/s (2·m·n·k per call). Needs libopenblas.so.0 (Debian: apt-get install libopenblas0-pthread);
/// OpenBLAS is used here only, never by src/. Run: dotnet run -c Release --project bench/Engine.Bench -- --filter '*Sgemm*'
/// </summary>
[Config(typeof(ThroughputConfig))]
public unsafe class SgemmBenchmarks : IWorkload
{
    private const int Threads = 2;

    /// <summary>
    /// "m×n×k" plus the transposes: square NN sizes, the transformer projection (4096×1024)·(1024×4096), and the NT/TN
    /// forms that backward passes use (dX = dY·Wᵀ, dW = Xᵀ·dY).
    /// </summary>
    [Params("256x256x256 NN", "512x512x512 NN", "1024x1024x1024 NN", "2048x2048x2048 NN", "4096x4096x1024 NN",
        "1024x1024x1024 NT", "1024x1024x1024 TN", "4096x4096x1024 NT", "4096x4096x1024 TN")]
    public string Shape { get; set; } = "";

    private GemmOperands _operands = null!;

    [GlobalSetup]
    public void Setup()
    {
        _operands = new GemmOperands(GemmShape.Parse(Shape));
        OpenBlasNative.openblas_set_num_threads(Threads);
    }

    [GlobalCleanup]
    public void Cleanup() => _operands.Dispose();

    [Benchmark(Baseline = true)]
    public void OpenBlas() => _operands.RunOpenBlas();

    [Benchmark]
    public void EngineOptimized() => _operands.RunEngine(Threads);

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) =>
        (GemmShape.Parse((string)parameters[nameof(Shape)]).Flops, "FLOP");
}

/// <summary>The reference triple loop next to the optimized kernel, at sizes where the reference finishes in reasonable time.</summary>
[Config(typeof(ThroughputConfig))]
public unsafe class SgemmReferenceBenchmarks : IWorkload
{
    [Params("256x256x256 NN", "512x512x512 NN")]
    public string Shape { get; set; } = "";

    private GemmOperands _operands = null!;

    [GlobalSetup]
    public void Setup() => _operands = new GemmOperands(GemmShape.Parse(Shape));

    [GlobalCleanup]
    public void Cleanup() => _operands.Dispose();

    [Benchmark(Baseline = true)]
    public void EngineReference() => _operands.RunReference();

    [Benchmark]
    public void EngineOptimized() => _operands.RunEngine(threads: 2);

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) =>
        (GemmShape.Parse((string)parameters[nameof(Shape)]).Flops, "FLOP");
}

/// <summary>C (m×n) = op(A)·op(B) with op(A) m×k, op(B) k×n; written "MxNxK AB" with A, B each N (as stored) or T.</summary>
public sealed record GemmShape(int M, int N, int K, bool TransA, bool TransB)
{
    public double Flops => 2.0 * M * N * K;

    public static GemmShape Parse(string text)
    {
        string[] parts = text.Split(' ');
        int[] sizes = parts[0].Split('x').Select(int.Parse).ToArray();
        return new GemmShape(sizes[0], sizes[1], sizes[2], parts[1][0] == 'T', parts[1][1] == 'T');
    }
}

/// <summary>64-byte aligned random operands for one shape (C starts zeroed; beta is 0 so its contents never matter).</summary>
internal sealed unsafe class GemmOperands : IDisposable
{
    private readonly GemmShape _shape;
    private readonly float* _a, _b, _c;
    private readonly long _lda, _ldb, _ldc;

    public GemmOperands(GemmShape shape)
    {
        _shape = shape;
        (_lda, _ldb, _ldc) = (shape.TransA ? shape.M : shape.K, shape.TransB ? shape.K : shape.N, shape.N);
        _a = Allocate((long)shape.M * shape.K, seed: 1);
        _b = Allocate((long)shape.K * shape.N, seed: 2);
        _c = Allocate((long)shape.M * shape.N, seed: 3);
    }

    public void RunEngine(int threads) =>
        Gemm.SgemmOptimized(_shape.TransA, _shape.TransB, _shape.M, _shape.N, _shape.K, 1f, _a, _lda, _b, _ldb, 0f, _c, _ldc, threads);

    public void RunReference() =>
        Gemm.SgemmReference(_shape.TransA, _shape.TransB, _shape.M, _shape.N, _shape.K, 1f, _a, _lda, _b, _ldb, 0f, _c, _ldc);

    public void RunOpenBlas() =>
        OpenBlasNative.cblas_sgemm(OpenBlasNative.RowMajor, Transpose(_shape.TransA), Transpose(_shape.TransB), _shape.M, _shape.N, _shape.K,
            1f, _a, (int)_lda, _b, (int)_ldb, 0f, _c, (int)_ldc);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_a);
        NativeMemory.AlignedFree(_b);
        NativeMemory.AlignedFree(_c);
    }

    private static int Transpose(bool transposed) => transposed ? OpenBlasNative.Trans : OpenBlasNative.NoTrans;

    private static float* Allocate(long length, int seed)
    {
        float* values = (float*)NativeMemory.AlignedAlloc((nuint)(length * sizeof(float)), 64);
        var random = new Random(seed);
        for (long i = 0; i < length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }
        return values;
    }
}

/// <summary>OpenBLAS C interface (benchmark comparison only).</summary>
internal static unsafe class OpenBlasNative
{
    public const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [DllImport("libopenblas.so.0")]
    public static extern void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [DllImport("libopenblas.so.0")]
    public static extern void openblas_set_num_threads(int threads);
}
