using System.Numerics;
using Engine.Cpu.Kernels;
using Engine.Tests.Reference;

namespace Engine.Tests.Kernels;

public class CausalAttentionTests
{
    // How errors are measured: per tensor, max_i |kernel_i − reference_i| / max(max_i |reference_i|, 1), i.e. the
    // worst absolute error in units of the tensor's largest magnitude (robust to individual near-zero entries, which
    // a per-element relative error would blow up). The floor of 1 (the scale of the inputs) makes it an absolute
    // error for tensors that are exactly zero, e.g. dq and dk when each query sees a single key. The float32
    // inputs are rounded to float first and the float64 reference sees exactly those values, so only the
    // kernel's float32 arithmetic is measured.
    //
    // Why 2e-5: float32 unit roundoff is 6e-8. Each output is a sum over up to ~200 keys × 64 dims of
    // products of O(1) terms plus exp2/log2 (≈1–2 ulp each), and the backward chains three such sums
    // (P, dP−Delta, then dQ/dK/dV). The expected error is ~√n·u·(a few) ≈ 1e-6; the worst cases observed are
    // ≈1.5e-6, so 2e-5 leaves margin without hiding real bugs (a wrong mask or a missed tile gives 1e-2..1).
    private const double Float32Tolerance = 2e-5;

    // The float64 kernel against the float64 reference: only summation-order differences remain.
    private const double Float64Tolerance = 1e-12;

    // (batch, qHeads, kvHeads, queryLen, keyLen, headDim). Covers queryLen 1/3/7/33/70/76/100, headDim 5/16/24/64
    // (non-multiples of the vector width take the padded-copy path), GQA ratios 1/2/4/5, keyLen > queryLen
    // (KV-cache offset), several query and key blocks, partial last blocks (incl. a ≤8-row tail block, which
    // takes the few-rows forward), queryLen ≤ 8 (decoding: query heads of a group packed into one work item,
    // split into uneven chunks for the 5-head group), and (batch·kvHeads) of 1 and 3, which with 2 threads
    // take the split-key-range backward with dq partials.
    private static readonly int[][] Shapes =
    [
        [1, 1, 1, 1, 1, 5],
        [1, 2, 2, 1, 37, 64],
        [2, 2, 1, 7, 7, 16],
        [1, 4, 1, 33, 40, 24],
        [2, 4, 4, 33, 33, 5],
        [1, 4, 2, 100, 100, 64],
        [3, 2, 1, 76, 130, 24],
        [1, 2, 1, 70, 150, 16],
        [1, 8, 2, 7, 200, 64],
        [1, 5, 1, 3, 50, 16],
    ];

    public static IEnumerable<object[]> Cases()
    {
        foreach (var s in Shapes)
            foreach (int threads in new[] { 1, 2 })
                yield return [s[0], s[1], s[2], s[3], s[4], s[5], threads];
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32MatchesFloat64Reference(int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, int threads)
    {
        var rng = new Random(HashCode.Combine(batch, qHeads, kvHeads, queryLen, keyLen, headDim));
        var q = RandomFloats(rng, batch * qHeads * queryLen * headDim);
        var k = RandomFloats(rng, batch * kvHeads * keyLen * headDim);
        var v = RandomFloats(rng, batch * kvHeads * keyLen * headDim);
        var dOut = RandomFloats(rng, q.Length);
        double scale = 1.0 / Math.Sqrt(headDim);

        var (o, lse) = RunForward(q, k, v, batch, qHeads, kvHeads, queryLen, keyLen, headDim, (float)scale, threads);
        var (dq, dk, dv) = RunBackward(q, k, v, o, lse, dOut, batch, qHeads, kvHeads, queryLen, keyLen, headDim, (float)scale, threads);

        var (qd, kd, vd, dOutD) = (ToDouble(q), ToDouble(k), ToDouble(v), ToDouble(dOut));
        var (refO, refLse) = AttentionReference.Forward(qd, kd, vd, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale);
        var (refDq, refDk, refDv) = AttentionReference.Backward(qd, kd, vd, dOutD, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale);

        AssertClose(refO, ToDouble(o), Float32Tolerance, "o");
        AssertClose(refLse, ToDouble(lse), Float32Tolerance, "logSumExp");
        AssertClose(refDq, ToDouble(dq), Float32Tolerance, "dq");
        AssertClose(refDk, ToDouble(dk), Float32Tolerance, "dk");
        AssertClose(refDv, ToDouble(dv), Float32Tolerance, "dv");
    }

    [Theory]
    [InlineData(2, 4, 2, 33, 40, 24, 1)]
    [InlineData(1, 2, 1, 100, 100, 64, 2)]
    [InlineData(3, 2, 2, 7, 70, 5, 2)]
    public void Float64MatchesFloat64Reference(int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, int threads)
    {
        var rng = new Random(HashCode.Combine(batch, qHeads, kvHeads, queryLen, keyLen, headDim, 64));
        var q = RandomDoubles(rng, batch * qHeads * queryLen * headDim);
        var k = RandomDoubles(rng, batch * kvHeads * keyLen * headDim);
        var v = RandomDoubles(rng, batch * kvHeads * keyLen * headDim);
        var dOut = RandomDoubles(rng, q.Length);
        double scale = 1.0 / Math.Sqrt(headDim);

        var (o, lse) = RunForward(q, k, v, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
        var (dq, dk, dv) = RunBackward(q, k, v, o, lse, dOut, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
        var (refO, refLse) = AttentionReference.Forward(q, k, v, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale);
        var (refDq, refDk, refDv) = AttentionReference.Backward(q, k, v, dOut, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale);

        AssertClose(refO, o, Float64Tolerance, "o");
        AssertClose(refLse, lse, Float64Tolerance, "logSumExp");
        AssertClose(refDq, dq, Float64Tolerance, "dq");
        AssertClose(refDk, dk, Float64Tolerance, "dk");
        AssertClose(refDv, dv, Float64Tolerance, "dv");
    }

    /// <summary>
    /// Central differences of loss = Σ o ∘ R through the float64 kernel's Forward, against its Backward with dOut = R.
    /// With step h = 1e-5 the truncation error is O(h²)·|f'''| ≈ 1e-10 and the cancellation error ≈ 1e-16/h ≈ 1e-11,
    /// so 1e-6 (same normalisation as above) is loose enough for float64 and far below any real gradient bug.
    /// </summary>
    [Theory]
    [InlineData(2, 4, 2, 5, 8, 3, 1)]   // queryLen ≤ 8: packed few-rows forward
    [InlineData(1, 2, 1, 6, 6, 9, 2)]
    [InlineData(1, 2, 1, 12, 14, 4, 1)] // main tiled forward (transposed scores) with a diagonal tile
    public void Float64GradientMatchesCentralDifferences(int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, int threads)
    {
        var rng = new Random(HashCode.Combine(batch, qHeads, kvHeads, queryLen, keyLen, headDim, 7));
        var q = RandomDoubles(rng, batch * qHeads * queryLen * headDim);
        var k = RandomDoubles(rng, batch * kvHeads * keyLen * headDim);
        var v = RandomDoubles(rng, batch * kvHeads * keyLen * headDim);
        var weights = RandomDoubles(rng, q.Length);
        double scale = 1.0 / Math.Sqrt(headDim);

        var (o, lse) = RunForward(q, k, v, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
        var (dq, dk, dv) = RunBackward(q, k, v, o, lse, weights, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);

        double Loss()
        {
            var (output, _) = RunForward(q, k, v, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
            double sum = 0;
            for (int i = 0; i < output.Length; i++) sum += output[i] * weights[i];
            return sum;
        }

        const double step = 1e-5;
        foreach (var (input, analytic, name) in new[] { (q, dq, "dq"), (k, dk, "dk"), (v, dv, "dv") })
        {
            var numeric = new double[input.Length];
            for (int i = 0; i < input.Length; i++)
            {
                double saved = input[i];
                input[i] = saved + step; double plus = Loss();
                input[i] = saved - step; double minus = Loss();
                input[i] = saved;
                numeric[i] = (plus - minus) / (2 * step);
            }
            AssertClose(numeric, analytic, 1e-6, name);
        }
    }

    [Fact]
    public unsafe void RejectsInvalidShapes()
    {
        var buffer = new float[64];
        fixed (float* p = buffer)
        {
            nint ptr = (nint)p;
            Assert.Throws<ArgumentException>(() => CausalAttention.Forward((float*)ptr, (float*)ptr, (float*)ptr, (float*)ptr, (float*)ptr, 1, 3, 2, 1, 1, 4, 1f, 1));
            Assert.Throws<ArgumentException>(() => CausalAttention.Forward((float*)ptr, (float*)ptr, (float*)ptr, (float*)ptr, (float*)ptr, 1, 1, 1, 4, 2, 4, 1f, 1));
        }
    }

    // ------------------------------------------------------------------ helpers

    private static unsafe (T[] O, T[] LogSumExp) RunForward<T>(T[] q, T[] k, T[] v,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, T scale, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // NaN poison: any element the kernel fails to write shows up as a NaN error.
        var o = Poisoned<T>(q.Length);
        var lse = Poisoned<T>(batch * qHeads * queryLen);
        fixed (T* pq = q, pk = k, pv = v, po = o, pl = lse)
            CausalAttention.Forward(pq, pk, pv, po, pl, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
        return (o, lse);
    }

    private static unsafe (T[] DQ, T[] DK, T[] DV) RunBackward<T>(T[] q, T[] k, T[] v, T[] o, T[] lse, T[] dOut,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, T scale, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var dq = Poisoned<T>(q.Length);
        var dk = Poisoned<T>(k.Length);
        var dv = Poisoned<T>(v.Length);
        fixed (T* pq = q, pk = k, pv = v, po = o, pl = lse, pdo = dOut, pdq = dq, pdk = dk, pdv = dv)
            CausalAttention.Backward(pq, pk, pv, po, pl, pdo, pdq, pdk, pdv, batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, threads);
        return (dq, dk, dv);
    }

    private static T[] Poisoned<T>(int length) where T : IBinaryFloatingPointIeee754<T>
    {
        var array = new T[length];
        Array.Fill(array, T.NaN);
        return array;
    }

    /// <summary>Uniform in [−2, 2] (never exactly zero in practice): with scale 1/√headDim the scores have
    /// a spread of ~1.3, so softmax rows are neither flat nor one-hot.</summary>
    private static double[] RandomDoubles(Random rng, int length)
    {
        var array = new double[length];
        for (int i = 0; i < length; i++) array[i] = 4 * rng.NextDouble() - 2;
        return array;
    }

    private static float[] RandomFloats(Random rng, int length) => Array.ConvertAll(RandomDoubles(rng, length), x => (float)x);

    private static double[] ToDouble(float[] values) => Array.ConvertAll(values, x => (double)x);

    private static void AssertClose(double[] expected, double[] actual, double tolerance, string name)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxMagnitude = 0, maxError = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxMagnitude = Math.Max(maxMagnitude, Math.Abs(expected[i]));
            double error = Math.Abs(actual[i] - expected[i]);
            if (double.IsNaN(error)) Assert.Fail($"{name}[{i}] is NaN (expected {expected[i]}): element not written or NaN produced.");
            maxError = Math.Max(maxError, error);
        }
        double normalized = maxError / Math.Max(maxMagnitude, 1.0);
        Assert.True(normalized <= tolerance, $"{name}: max error {maxError:E3} / max(max |ref| {maxMagnitude:E3}, 1) = {normalized:E3} > {tolerance:E1}");
    }
}
