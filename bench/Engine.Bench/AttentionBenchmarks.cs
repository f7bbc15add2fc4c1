using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Engine.Cpu.Kernels;

namespace Engine.Bench;

/// <summary>
/// Fused causal attention (float32) forward and forward+backward; the throughput column shows GFLOP/s.
/// FLOPs counted: forward = 2 matmuls × 2·B·Hq·T·T·D, halved for causality = 2·B·Hq·T²·D;
/// backward = 5 such matmuls = 2.5× forward; so forward+backward = 3.5× forward.
/// </summary>
[Config(typeof(ThroughputConfig))]
public unsafe class AttentionBenchmarks : IWorkload
{
    public sealed record Shape(int Batch, int QHeads, int KvHeads, int SeqLen, int HeadDim)
    {
        public double ForwardFlops => 2.0 * Batch * QHeads * (double)SeqLen * SeqLen * HeadDim;
        public override string ToString() => $"B{Batch} H{QHeads}/{KvHeads} T{SeqLen} D{HeadDim}";
    }

    public static IEnumerable<Shape> Shapes() =>
    [
        new(8, 4, 2, 256, 64),   // tiny-Llama training step
        new(4, 8, 8, 256, 64),
        new(4, 8, 8, 1024, 64),
    ];

    [ParamsSource(nameof(Shapes))]
    public Shape Size { get; set; } = Shapes().First();

    public static IEnumerable<int> ThreadCounts() => [Environment.ProcessorCount];

    [ParamsSource(nameof(ThreadCounts))]
    public int Threads { get; set; } = Environment.ProcessorCount;

    private float* _q, _k, _v, _o, _lse, _dOut, _dq, _dk, _dv;
    private float _scale;

    [GlobalSetup]
    public void Setup()
    {
        var s = Size;
        nint qCount = (nint)s.Batch * s.QHeads * s.SeqLen * s.HeadDim;
        nint kvCount = (nint)s.Batch * s.KvHeads * s.SeqLen * s.HeadDim;
        var rng = new Random(42);
        _q = Random(qCount, rng); _k = Random(kvCount, rng); _v = Random(kvCount, rng); _dOut = Random(qCount, rng);
        _o = Alloc(qCount); _lse = Alloc((nint)s.Batch * s.QHeads * s.SeqLen);
        _dq = Alloc(qCount); _dk = Alloc(kvCount); _dv = Alloc(kvCount);
        _scale = 1f / MathF.Sqrt(s.HeadDim);
        Forward(); // backward needs o and logSumExp
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var p in new[] { _q, _k, _v, _o, _lse, _dOut, _dq, _dk, _dv }) NativeMemory.AlignedFree(p);
    }

    [Benchmark]
    public void Forward()
    {
        var s = Size;
        CausalAttention.Forward(_q, _k, _v, _o, _lse, s.Batch, s.QHeads, s.KvHeads, s.SeqLen, s.SeqLen, s.HeadDim, _scale, Threads);
    }

    [Benchmark]
    public void ForwardBackward()
    {
        var s = Size;
        CausalAttention.Forward(_q, _k, _v, _o, _lse, s.Batch, s.QHeads, s.KvHeads, s.SeqLen, s.SeqLen, s.HeadDim, _scale, Threads);
        CausalAttention.Backward(_q, _k, _v, _o, _lse, _dOut, _dq, _dk, _dv,
            s.Batch, s.QHeads, s.KvHeads, s.SeqLen, s.SeqLen, s.HeadDim, _scale, Threads);
    }

    private static float* Alloc(nint count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);

    private static float* Random(nint count, Random rng)
    {
        float* p = Alloc(count);
        for (nint i = 0; i < count; i++) p[i] = 2 * rng.NextSingle() - 1;
        return p;
    }

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters) =>
        (((Shape)parameters[nameof(Size)]).ForwardFlops * (method == nameof(ForwardBackward) ? 3.5 : 1.0), "FLOP");
}
