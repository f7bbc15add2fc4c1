using Engine.Cpu.Kernels;

namespace Engine.Tests.Kernels;

/// <summary>
/// Checks the optimized SGEMM/DGEMM against a float64 triple loop written here (independent of Gemm's own reference).
///
/// Tolerance: any summation order of k products in precision u obeys |computed − exact| ≤ γ_k·Σ_p|a_ip·b_pj| with
/// γ_k ≈ k·u (Higham, Accuracy and Stability, §3.1); alpha/beta add two more roundings, so we allow (k + 2)·u times the
/// element's scale |alpha|·Σ_p|a_ip·b_pj| + |beta·c_ij|, doubled for the reference's own float64 rounding and the
/// alpha folded into the packed A. This bound is rigorous (never flaky) yet a wrong index, a dropped k slice or a
/// mishandled edge changes elements by O(scale / k) or more, far above it for the sizes used here.
/// </summary>
public unsafe class GemmTests
{
    private const double FloatUnit = 1.0 / (1 << 24);
    private const double DoubleUnit = 1.0 / (1L << 53);

    public static TheoryData<bool, bool, int, int, int> Shapes()
    {
        var data = new TheoryData<bool, bool, int, int, int>();
        (int m, int n, int k)[] sizes =
        [
            (1, 1, 1), (1, 7, 1), (7, 1, 3), (3, 17, 65), (17, 65, 33), (65, 130, 17), (6, 64, 1), (12, 128, 2),
            (130, 67, 257), (257, 33, 130), (33, 257, 7), (37, 70, 1023), (7, 2100, 20), (1, 1023, 40), (1023, 1, 40),
        ];
        foreach (bool transA in new[] { false, true })
        {
            foreach (bool transB in new[] { false, true })
            {
                foreach (var (m, n, k) in sizes)
                {
                    data.Add(transA, transB, m, n, k);
                }
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void SgemmMatchesFloat64Reference(bool transA, bool transB, int m, int n, int k) =>
        CheckSgemm(transA, transB, m, n, k, alpha: 1f, beta: 0f, threads: [1, 2], seed: m * 31 + n * 7 + k);

    [Theory]
    [InlineData(1f, 0f)]
    [InlineData(1f, 1f)]
    [InlineData(-0.5f, 2f)]
    [InlineData(2f, 0.5f)]
    [InlineData(0f, 0.75f)]
    [InlineData(0f, 0f)]
    public void SgemmAlphaBeta(float alpha, float beta)
    {
        foreach (bool transA in new[] { false, true })
        {
            foreach (bool transB in new[] { false, true })
            {
                CheckSgemm(transA, transB, 37, 91, 129, alpha, beta, threads: [2], seed: 5);
                CheckSgemm(transA, transB, 50, 128, 600, alpha, beta, threads: [1], seed: 6);
            }
        }
    }

    [Fact]
    public void SgemmWithZeroDepthScalesC()
    {
        CheckSgemm(false, false, 5, 9, 0, 2f, 0.5f, threads: [1], seed: 1);
        CheckSgemm(true, true, 5, 9, 0, 2f, 0f, threads: [2], seed: 2);
    }

    [Fact]
    public void SgemmBetaZeroNeverReadsNaNInC()
    {
        foreach (bool transA in new[] { false, true })
        {
            foreach (bool transB in new[] { false, true })
            {
                // Sizes with full tiles, edge tiles and several k slices.
                foreach (var (m, n, k) in new[] { (64, 192, 64), (13, 70, 9), (200, 150, 1100) })
                {
                    float[] c = new float[m * n];
                    Array.Fill(c, float.NaN);
                    float[] a = RandomFloats(m * k, 1), b = RandomFloats(k * n, 2);
                    fixed (float* aPointer = a, bPointer = b, cPointer = c)
                    {
                        Gemm.SgemmOptimized(transA, transB, m, n, k, 1f, aPointer, transA ? m : k, bPointer, transB ? k : n, 0f, cPointer, n, 2);
                    }
                    Assert.DoesNotContain(c, float.IsNaN);
                }
            }
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void SgemmStridedBatchedWithPaddedRows(bool transA, bool transB)
    {
        const int m = 19, n = 70, k = 45, batchCount = 5;
        // Row strides larger than the rows, and gaps between batch matrices, all of which must stay untouched / unread.
        long lda = (transA ? m : k) + 3, ldb = (transB ? k : n) + 5, ldc = n + 7;
        long strideA = lda * (transA ? k : m) + 11, strideB = ldb * (transB ? n : k) + 13, strideC = ldc * m + 17;
        float[] a = RandomFloats((int)(strideA * batchCount), 3), b = RandomFloats((int)(strideB * batchCount), 4);
        float[] c = RandomFloats((int)(strideC * batchCount), 5);
        float[] expected = (float[])c.Clone();
        const float alpha = 0.5f, beta = -1.5f;
        for (int batch = 0; batch < batchCount; batch++)
        {
            ReferenceGemm(transA, transB, m, n, k, alpha, a, batch * strideA, lda, b, batch * strideB, ldb, beta, expected, batch * strideC, ldc, out _);
        }
        foreach (int threads in new[] { 1, 2 })
        {
            float[] actual = (float[])c.Clone();
            fixed (float* aPointer = a, bPointer = b, cPointer = actual)
            {
                Gemm.SgemmStridedBatched(transA, transB, m, n, k, alpha, aPointer, lda, strideA, bPointer, ldb, strideB, beta, cPointer, ldc, strideC, batchCount, threads);
            }
            double[] scale = new double[c.Length];
            for (int batch = 0; batch < batchCount; batch++)
            {
                ReferenceGemm(transA, transB, m, n, k, alpha, a, batch * strideA, lda, b, batch * strideB, ldb, beta, (float[])c.Clone(), batch * strideC, ldc, out double[] batchScale);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        scale[batch * strideC + i * ldc + j] = batchScale[i * n + j];
                    }
                }
            }
            for (int index = 0; index < c.Length; index++)
            {
                // Padding elements have scale 0: they must come back bit-identical.
                double tolerance = 2 * (k + 2) * FloatUnit * scale[index];
                Assert.True(Math.Abs(actual[index] - expected[index]) <= tolerance, $"index {index}: {actual[index]} vs {expected[index]} (threads {threads})");
            }
        }
    }

    [Fact]
    public void SgemmBatchedManySmallMatrices()
    {
        // Enough matrices that each thread takes whole ones.
        const int m = 8, n = 9, k = 10, batchCount = 12;
        float[] a = RandomFloats(m * k * batchCount, 6), b = RandomFloats(k * n * batchCount, 7), c = new float[m * n * batchCount];
        float[] expected = new float[c.Length];
        fixed (float* aPointer = a, bPointer = b, cPointer = c, expectedPointer = expected)
        {
            Gemm.SgemmStridedBatched(false, true, m, n, k, 1f, aPointer, k, m * k, bPointer, k, k * n, 0f, cPointer, n, m * n, batchCount, 2);
            for (int batch = 0; batch < batchCount; batch++)
            {
                Gemm.SgemmReference(false, true, m, n, k, 1f, aPointer + batch * m * k, k, bPointer + batch * k * n, k, 0f, expectedPointer + batch * m * n, n);
            }
        }
        for (int index = 0; index < c.Length; index++)
        {
            Assert.True(Math.Abs(c[index] - expected[index]) <= 2 * (k + 2) * FloatUnit * k, $"index {index}");
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void DgemmMatchesReference(bool transA, bool transB)
    {
        foreach (var (m, n, k) in new[] { (1, 1, 1), (7, 33, 17), (200, 40, 300), (3, 2100, 5) })
        {
            CheckDgemm(transA, transB, m, n, k, 1.25, 0.5, threads: [1, 2], seed: m + n + k);
            CheckDgemm(transA, transB, m, n, k, 1.0, 0.0, threads: [1, 2], seed: m + n + k);
        }
    }

    [Fact]
    public void DgemmStridedBatched()
    {
        const int m = 13, n = 40, k = 21, batchCount = 3;
        double[] a = RandomDoubles(m * k * batchCount, 8), b = RandomDoubles(k * n * batchCount, 9), c = RandomDoubles(m * n * batchCount, 10);
        double[] expected = (double[])c.Clone();
        fixed (double* aPointer = a, bPointer = b, cPointer = c, expectedPointer = expected)
        {
            Gemm.DgemmStridedBatched(true, false, m, n, k, 2.0, aPointer, m, m * k, bPointer, n, k * n, 0.5, cPointer, n, m * n, batchCount, 2);
            for (int batch = 0; batch < batchCount; batch++)
            {
                Gemm.DgemmReference(true, false, m, n, k, 2.0, aPointer + batch * m * k, m, bPointer + batch * k * n, n, 0.5, expectedPointer + batch * m * n, n);
            }
        }
        for (int index = 0; index < c.Length; index++)
        {
            Assert.True(Math.Abs(c[index] - expected[index]) <= 1e-12, $"index {index}: {c[index]} vs {expected[index]}");
        }
    }

    [Fact]
    public void ImplementationSwitchSelectsReference()
    {
        GemmImplementation saved = Gemm.Implementation;
        try
        {
            Gemm.Implementation = GemmImplementation.Reference;
            CheckSgemm(true, false, 9, 21, 14, 1f, 0.5f, threads: [2], seed: 11);
            CheckDgemm(false, true, 9, 21, 14, 1.0, 0.5, threads: [2], seed: 12);
        }
        finally
        {
            Gemm.Implementation = saved;
        }
        Assert.Equal(GemmImplementation.Optimized, Gemm.Implementation);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void ValidatorReportsSmallError(bool transA, bool transB)
    {
        double error = Gemm.Validate(70, 130, 300, transA, transB, seed: 3);
        Assert.InRange(error, 0, 2 * 302 * FloatUnit);
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SgemmOnScratch(-1, 1, 1, lda: 1, ldb: 1, ldc: 1));
        // lda 2 < k 3.
        Assert.Throws<ArgumentOutOfRangeException>(() => SgemmOnScratch(2, 2, 3, lda: 2, ldb: 2, ldc: 2));
    }

    private static void SgemmOnScratch(int m, int n, int k, long lda, long ldb, long ldc)
    {
        float* scratch = stackalloc float[64];
        Gemm.SgemmOptimized(false, false, m, n, k, 1f, scratch, lda, scratch, ldb, 0f, scratch, ldc, 1);
    }

    private static void CheckSgemm(bool transA, bool transB, int m, int n, int k, float alpha, float beta, int[] threads, int seed)
    {
        long lda = transA ? m : k, ldb = transB ? k : n, ldc = n;
        float[] a = RandomFloats(m * k, seed), b = RandomFloats(k * n, seed + 1), c = RandomFloats(m * n, seed + 2);
        float[] expected = (float[])c.Clone();
        ReferenceGemm(transA, transB, m, n, k, alpha, a, 0, lda, b, 0, ldb, beta, expected, 0, ldc, out double[] scale);
        foreach (int threadCount in threads)
        {
            float[] actual = (float[])c.Clone();
            if (beta == 0)
            {
                Array.Fill(actual, float.NaN);
            }
            fixed (float* aPointer = a, bPointer = b, cPointer = actual)
            {
                Gemm.Sgemm(transA, transB, m, n, k, alpha, aPointer, lda, bPointer, ldb, beta, cPointer, ldc, threadCount);
            }
            for (int index = 0; index < actual.Length; index++)
            {
                double tolerance = 2 * (k + 2) * FloatUnit * scale[index];
                Assert.True(Math.Abs(actual[index] - expected[index]) <= tolerance,
                    $"{(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} m={m} n={n} k={k} alpha={alpha} beta={beta} threads={threadCount}: element ({index / n}, {index % n}) = {actual[index]}, expected {expected[index]} ± {tolerance:E2}");
            }
        }
    }

    private static void CheckDgemm(bool transA, bool transB, int m, int n, int k, double alpha, double beta, int[] threads, int seed)
    {
        long lda = transA ? m : k, ldb = transB ? k : n, ldc = n;
        double[] a = RandomDoubles(m * k, seed), b = RandomDoubles(k * n, seed + 1), c = RandomDoubles(m * n, seed + 2);
        double[] opA = Materialize(a, 0, m, k, transA ? 1 : lda, transA ? lda : 1);
        double[] opBTransposed = Materialize(b, 0, n, k, transB ? ldb : 1, transB ? 1 : ldb);
        double[] expected = new double[m * n], scale = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                var (sum, magnitude) = Dot(opA.AsSpan(i * k, k), opBTransposed.AsSpan(j * k, k));
                expected[i * n + j] = alpha * sum + (beta == 0 ? 0 : beta * c[i * ldc + j]);
                scale[i * n + j] = Math.Abs(alpha) * magnitude + Math.Abs(beta * c[i * ldc + j]);
            }
        }
        foreach (int threadCount in threads)
        {
            double[] actual = (double[])c.Clone();
            if (beta == 0)
            {
                Array.Fill(actual, double.NaN);
            }
            fixed (double* aPointer = a, bPointer = b, cPointer = actual)
            {
                Gemm.Dgemm(transA, transB, m, n, k, alpha, aPointer, lda, bPointer, ldb, beta, cPointer, ldc, threadCount);
            }
            for (int index = 0; index < actual.Length; index++)
            {
                // Both sides round in float64 here, so allow the bound twice over (see the class comment).
                double tolerance = 4 * (k + 2) * DoubleUnit * scale[index];
                Assert.True(Math.Abs(actual[index] - expected[index]) <= tolerance,
                    $"dgemm {(transA ? 'T' : 'N')}{(transB ? 'T' : 'N')} m={m} n={n} k={k} threads={threadCount}: element {index} = {actual[index]}, expected {expected[index]}");
            }
        }
    }

    /// <summary>float64 triple loop: C = alpha·op(A)·op(B) + beta·C in place (C row-major at cOffset), plus each element's error scale.</summary>
    private static void ReferenceGemm(bool transA, bool transB, int m, int n, int k, float alpha, float[] a, long aOffset, long lda, float[] b, long bOffset, long ldb, float beta, float[] c, long cOffset, long ldc, out double[] scale)
    {
        double[] opA = Materialize(Array.ConvertAll(a, value => (double)value), aOffset, m, k, transA ? 1 : lda, transA ? lda : 1);
        double[] opBTransposed = Materialize(Array.ConvertAll(b, value => (double)value), bOffset, n, k, transB ? ldb : 1, transB ? 1 : ldb);
        scale = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                var (sum, magnitude) = Dot(opA.AsSpan(i * k, k), opBTransposed.AsSpan(j * k, k));
                long target = cOffset + i * ldc + j;
                double previous = beta == 0 ? 0 : beta * (double)c[target];
                scale[i * n + j] = Math.Abs(alpha) * magnitude + Math.Abs(previous);
                c[target] = (float)(alpha * sum + previous);
            }
        }
    }

    /// <summary>rows×columns row-major copy of the matrix whose (r, q) element is source[offset + r·rowStride + q·columnStride].</summary>
    private static double[] Materialize(double[] source, long offset, int rows, int columns, long rowStride, long columnStride)
    {
        var result = new double[rows * columns];
        for (int r = 0; r < rows; r++)
        {
            for (int q = 0; q < columns; q++)
            {
                result[r * columns + q] = source[offset + r * rowStride + q * columnStride];
            }
        }
        return result;
    }

    private static (double Sum, double Magnitude) Dot(ReadOnlySpan<double> left, ReadOnlySpan<double> right)
    {
        double sum = 0, magnitude = 0;
        for (int p = 0; p < left.Length; p++)
        {
            double product = left[p] * right[p];
            sum += product;
            magnitude += Math.Abs(product);
        }
        return (sum, magnitude);
    }

    private static float[] RandomFloats(int length, int seed)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }
        return values;
    }

    private static double[] RandomDoubles(int length, int seed)
    {
        var random = new Random(seed);
        var values = new double[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = random.NextDouble() * 2 - 1;
        }
        return values;
    }
}
