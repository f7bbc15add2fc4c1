using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Cpu.Kernels;

/// <summary>Which GEMM implementation <see cref="Gemm"/> dispatches to.</summary>
public enum GemmImplementation
{
    /// <summary>Plain triple loop with float64 accumulation: slow, obviously correct.</summary>
    Reference,

    /// <summary>Cache-blocked, packed, SIMD micro-kernel, multithreaded.</summary>
    Optimized,
}

/// <summary>
/// Dense matrix multiply, row-major: C (m×n) = alpha·op(A)·op(B) + beta·C, where op(A) is m×k (A is stored k×m when
/// transA) and op(B) is k×n (B is stored n×k when transB). lda/ldb/ldc are the row strides, in elements, of the
/// matrices as stored. When beta == 0, C is never read (it may hold NaN). threads is the degree of parallelism
/// (1 = calling thread only, &lt;= 0 = Environment.ProcessorCount).
/// </summary>
public static unsafe class Gemm
{
    /// <summary>Selects the implementation behind Sgemm/Dgemm and their batched forms. Default: Optimized.</summary>
    public static GemmImplementation Implementation { get; set; } = GemmImplementation.Optimized;

    public static void Sgemm(bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc, int threads)
    {
        if (Implementation == GemmImplementation.Reference)
        {
            SgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        }
        else
        {
            SgemmOptimized(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
        }
    }

    public static void SgemmStridedBatched(bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, long strideA, float* b, long ldb, long strideB, float beta, float* c, long ldc, long strideC, int batchCount, int threads)
    {
        CheckBatch(batchCount);
        if (Implementation == GemmImplementation.Reference)
        {
            for (int batch = 0; batch < batchCount; batch++)
            {
                SgemmReference(transA, transB, m, n, k, alpha, a + batch * strideA, lda, b + batch * strideB, ldb, beta, c + batch * strideC, ldc);
            }
        }
        else
        {
            CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
            GemmCore<float>.RunBatched(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batchCount, threads);
        }
    }

    public static void Dgemm(bool transA, bool transB, int m, int n, int k, double alpha, double* a, long lda, double* b, long ldb, double beta, double* c, long ldc, int threads)
    {
        if (Implementation == GemmImplementation.Reference)
        {
            DgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        }
        else
        {
            DgemmOptimized(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
        }
    }

    public static void DgemmStridedBatched(bool transA, bool transB, int m, int n, int k, double alpha, double* a, long lda, long strideA, double* b, long ldb, long strideB, double beta, double* c, long ldc, long strideC, int batchCount, int threads)
    {
        CheckBatch(batchCount);
        if (Implementation == GemmImplementation.Reference)
        {
            for (int batch = 0; batch < batchCount; batch++)
            {
                DgemmReference(transA, transB, m, n, k, alpha, a + batch * strideA, lda, b + batch * strideB, ldb, beta, c + batch * strideC, ldc);
            }
        }
        else
        {
            CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
            GemmCore<double>.RunBatched(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, batchCount, threads);
        }
    }

    /// <summary>The optimized SGEMM regardless of <see cref="Implementation"/> (benchmarks and validation call it directly).</summary>
    public static void SgemmOptimized(bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc, int threads)
    {
        CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
        GemmCore<float>.Run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
    }

    /// <summary>The optimized DGEMM regardless of <see cref="Implementation"/>.</summary>
    public static void DgemmOptimized(bool transA, bool transB, int m, int n, int k, double alpha, double* a, long lda, double* b, long ldb, double beta, double* c, long ldc, int threads)
    {
        CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
        GemmCore<double>.Run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
    }

    /// <summary>Reference SGEMM: triple loop, float64 accumulation, single thread.</summary>
    public static void SgemmReference(bool transA, bool transB, int m, int n, int k, float alpha, float* a, long lda, float* b, long ldb, float beta, float* c, long ldc)
    {
        CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
        long aRowStride = transA ? 1 : lda, aColStride = transA ? lda : 1;
        long bRowStride = transB ? 1 : ldb, bColStride = transB ? ldb : 1;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    sum += (double)a[i * aRowStride + p * aColStride] * b[p * bRowStride + j * bColStride];
                }
                float* target = c + i * ldc + j;
                // beta == 0 must not read C: it may hold NaN.
                *target = (float)(alpha * sum + (beta == 0 ? 0.0 : (double)beta * *target));
            }
        }
    }

    /// <summary>Reference DGEMM: triple loop, single thread.</summary>
    public static void DgemmReference(bool transA, bool transB, int m, int n, int k, double alpha, double* a, long lda, double* b, long ldb, double beta, double* c, long ldc)
    {
        CheckArguments(transA, transB, m, n, k, lda, ldb, ldc);
        long aRowStride = transA ? 1 : lda, aColStride = transA ? lda : 1;
        long bRowStride = transB ? 1 : ldb, bColStride = transB ? ldb : 1;
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = 0;
                for (int p = 0; p < k; p++)
                {
                    sum += a[i * aRowStride + p * aColStride] * b[p * bRowStride + j * bColStride];
                }
                double* target = c + i * ldc + j;
                *target = alpha * sum + (beta == 0 ? 0.0 : beta * *target);
            }
        }
    }

    /// <summary>
    /// Runs the optimized and the reference SGEMM on the same random data (alpha 1.5, beta 0.5) and returns the largest
    /// error, each element's |optimized − reference| divided by its natural scale |alpha|·Σ_p|a_ip·b_pj| + |beta·c_ij|
    /// (plain relative error is meaningless where the sum cancels). Any summation order stays below the rigorous bound
    /// (k + 2)·2⁻²⁴; blocked FMA accumulation typically lands orders of magnitude under it. threads as in Sgemm.
    /// </summary>
    public static double Validate(int m, int n, int k, bool transA, bool transB, int seed, int threads = 0)
    {
        var random = new Random(seed);
        long lda = transA ? m : k, ldb = transB ? k : n, ldc = n;
        float[] aData = RandomArray(random, (long)m * k), bData = RandomArray(random, (long)k * n), cData = RandomArray(random, (long)m * n);
        float[] optimized = (float[])cData.Clone(), reference = (float[])cData.Clone();
        const float alpha = 1.5f, beta = 0.5f;
        fixed (float* a = aData, b = bData, opt = optimized, refC = reference)
        {
            SgemmOptimized(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, opt, ldc, threads);
            SgemmReference(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, refC, ldc);
            double worst = 0;
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double scale = Math.Abs(beta * cData[i * ldc + j]);
                    for (int p = 0; p < k; p++)
                    {
                        float aValue = transA ? a[p * lda + i] : a[i * lda + p];
                        float bValue = transB ? b[j * ldb + p] : b[p * ldb + j];
                        scale += Math.Abs(alpha * (double)aValue * bValue);
                    }
                    double error = Math.Abs((double)opt[i * ldc + j] - refC[i * ldc + j]) / Math.Max(scale, double.Epsilon);
                    worst = Math.Max(worst, error);
                }
            }
            return worst;
        }
    }

    private static float[] RandomArray(Random random, long length)
    {
        var values = new float[length];
        for (long i = 0; i < length; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }
        return values;
    }

    private static void CheckArguments(bool transA, bool transB, int m, int n, int k, long lda, long ldb, long ldc)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(m), $"gemm: negative size m={m} n={n} k={k}");
        }
        long aCols = transA ? m : k, bCols = transB ? k : n;
        if (lda < aCols || ldb < bCols || ldc < n)
        {
            throw new ArgumentOutOfRangeException(nameof(lda), $"gemm: leading dimension smaller than the stored row: lda={lda} (row {aCols}), ldb={ldb} (row {bCols}), ldc={ldc} (row {n})");
        }
    }

    private static void CheckBatch(int batchCount)
    {
        if (batchCount < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(batchCount), $"gemm: negative batch count {batchCount}");
        }
    }
}

/// <summary>
/// The blocked GEMM (GotoBLAS/BLIS loop nest) for float and double. For each NC-wide column block of C and each KC-deep
/// slice of k, op(B) is packed into KC×NR micro-panels; for each MC-high row block, op(A) is packed (scaled by alpha)
/// into MR×KC micro-panels; the micro-kernel then computes MR×NR tiles of C with the tile held in registers. Packing
/// makes every transpose case look the same to the micro-kernel and keeps its loads contiguous and sequential. The A
/// block stays in L2 while each B micro-panel is streamed past all of its A micro-panels.
/// </summary>
internal static unsafe class GemmCore<T> where T : unmanaged, INumber<T>
{
    /// <summary>Rows of C per micro-tile: 6 rows × 4 vectors = 24 accumulators + 4 B vectors + 1 broadcast fit in 32 zmm registers.</summary>
    internal const int MR = 6;

    internal static readonly bool UseVector512 = Vector512.IsHardwareAccelerated && Vector512<T>.IsSupported;

    /// <summary>AVX2 fallback: 6 rows × 2 vectors = 12 accumulators, fits the 16 ymm registers.</summary>
    internal static readonly bool UseVector256 = !UseVector512 && Vector256.IsHardwareAccelerated && Fma.IsSupported && Vector256<T>.IsSupported;

    /// <summary>Columns of C per micro-tile (64 floats / 32 doubles with AVX-512).</summary>
    internal static readonly int NR = UseVector512 ? 4 * Vector512<T>.Count : UseVector256 ? 2 * Vector256<T>.Count : 1;

    // Block sizes (elements), tuned on Zen 5 (48 KiB L1d, 1 MiB L2, 32 MiB L3): the MC×KC A block (384 KiB) and the
    // KC×NR B micro-panel streamed past it (128 KiB) share L2; the KC×NC B block (4 MiB) sits in L3. A deep KC
    // amortizes the C tile's load and store over more FMAs: measured KC 128 → 512 gains ~15%, beyond that is flat.
    // Not const so benchmarks can sweep them.

    /// <summary>Depth of a packed k slice.</summary>
    internal static int KC = sizeof(T) == 4 ? 512 : 256;

    /// <summary>Rows of op(A) packed at once (a multiple of MR).</summary>
    internal static int MC = 192;

    /// <summary>Columns of op(B) packed at once (a multiple of NR).</summary>
    internal static int NC = 2048;

    /// <summary>Below this many flops per thread, handing work to another thread costs more than it saves.</summary>
    private const double MinimumFlopsPerThread = 4e6;

    /// <summary>Per-thread packing buffers, allocated on first use and reused; freed by the finalizer when the thread dies.</summary>
    [ThreadStatic]
    private static PackBuffers? t_buffers;

    public static void Run(bool transA, bool transB, int m, int n, int k, T alpha, T* a, long lda, T* b, long ldb, T beta, T* c, long ldc, int threads)
    {
        if (m == 0 || n == 0)
        {
            return;
        }
        if (k == 0 || alpha == T.Zero)
        {
            ScaleC(m, n, beta, c, ldc);
            return;
        }
        int threadCount = UsefulThreads(m, n, k, threads);
        if (threadCount == 1)
        {
            RunSequential(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        // Two pieces per thread when pieces stay large: a thread slowed by other load then takes fewer of them, at the
        // price of packing the shared operand once more per piece (< 2% at 512 rows or columns per piece).
        int parts = Math.Max(m, n) >= 2 * threadCount * OversplitMinimum ? 2 * threadCount : threadCount;
        parts = Math.Min(parts, Math.Max(CeilDiv(m, MR), CeilDiv(n, NR)));
        var job = new Job(transA, transB, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, parts);
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, job.RunItem);
    }

    public static void RunBatched(bool transA, bool transB, int m, int n, int k, T alpha, T* a, long lda, long strideA, T* b, long ldb, long strideB, T beta, T* c, long ldc, long strideC, int batchCount, int threads)
    {
        if (batchCount == 0 || m == 0 || n == 0)
        {
            return;
        }
        if (batchCount == 1)
        {
            Run(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
            return;
        }
        int threadCount = threads <= 0 ? Environment.ProcessorCount : threads;
        double flops = 2.0 * m * n * k * batchCount;
        threadCount = (int)Math.Max(1, Math.Min(threadCount, flops / MinimumFlopsPerThread));
        if (threadCount == 1 || k == 0 || alpha == T.Zero)
        {
            for (int batch = 0; batch < batchCount; batch++)
            {
                Run(transA, transB, m, n, k, alpha, a + batch * strideA, lda, b + batch * strideB, ldb, beta, c + batch * strideC, ldc, 1);
            }
            return;
        }
        // Whole matrices per work item when there are enough to balance the threads; otherwise split each one too.
        int partsPerMatrix = batchCount >= 2 * threadCount || batchCount % threadCount == 0 ? 1 : UsefulThreads(m, n, k, threadCount);
        var job = new Job(transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC, partsPerMatrix);
        Parallel.For(0, batchCount * partsPerMatrix, new ParallelOptions { MaxDegreeOfParallelism = threadCount }, job.RunItem);
    }

    /// <summary>Smallest piece (rows or columns) worth a second piece per thread; see Run. Not const so benchmarks can sweep it.</summary>
    internal static int OversplitMinimum = 512;

    /// <summary>Threads worth using on one product: as asked, fewer when the product is small.</summary>
    private static int UsefulThreads(int m, int n, int k, int threads)
    {
        int threadCount = threads <= 0 ? Environment.ProcessorCount : threads;
        double flops = 2.0 * m * n * k;
        int byWork = (int)Math.Max(1, Math.Min(threadCount, flops / MinimumFlopsPerThread));
        int tiles = Math.Max(CeilDiv(m, MR), CeilDiv(n, NR));
        return Math.Min(byWork, tiles);
    }

    /// <summary>
    /// One work item of a (batched) product: matrix item / parts, piece item % parts. A product is cut along m or n,
    /// whichever duplicates less packing: cutting m makes every piece pack all of B, cutting n all of A.
    /// </summary>
    private sealed class Job(bool transA, bool transB, int m, int n, int k, T alpha, T* a, long lda, long strideA, T* b, long ldb, long strideB, T beta, T* c, long ldc, long strideC, int parts)
    {
        public void RunItem(int item)
        {
            int batch = item / parts, part = item % parts;
            T* aMatrix = a + batch * strideA, bMatrix = b + batch * strideB, cMatrix = c + batch * strideC;
            if (parts == 1)
            {
                RunSequential(transA, transB, m, n, k, alpha, aMatrix, lda, bMatrix, ldb, beta, cMatrix, ldc);
                return;
            }
            if (SplitRows(m, n))
            {
                int tiles = CeilDiv(m, MR);
                int first = Math.Min(m, tiles * part / parts * MR), last = Math.Min(m, tiles * (part + 1) / parts * MR);
                if (last > first)
                {
                    T* aRows = transA ? aMatrix + first : aMatrix + first * lda;
                    RunSequential(transA, transB, last - first, n, k, alpha, aRows, lda, bMatrix, ldb, beta, cMatrix + first * ldc, ldc);
                }
            }
            else
            {
                int tiles = CeilDiv(n, NR);
                int first = Math.Min(n, tiles * part / parts * NR), last = Math.Min(n, tiles * (part + 1) / parts * NR);
                if (last > first)
                {
                    T* bColumns = transB ? bMatrix + first * ldb : bMatrix + first;
                    RunSequential(transA, transB, m, last - first, k, alpha, aMatrix, lda, bColumns, ldb, beta, cMatrix + first, ldc);
                }
            }
        }

        private bool SplitRows(int rows, int columns)
        {
            if (CeilDiv(columns, NR) < parts)
            {
                return true;
            }
            if (CeilDiv(rows, MR) < parts)
            {
                return false;
            }
            // Relative packing cost per element, measured: A 0.08 ns, Aᵀ 0.18 ns, B 0.08 ns, Bᵀ 0.12 ns.
            double aCost = transA ? 2.2 : 1, bCost = transB ? 1.5 : 1;
            double splitRowsCost = aCost * rows / parts + bCost * columns;
            double splitColumnsCost = aCost * rows + bCost * columns / parts;
            // Cutting n also halves each piece's B block, the operand re-read from L3 for every row block, and lets the
            // pieces share A in L3: measured 3-7% faster on square shapes, so cut m only when that packs clearly less.
            return splitRowsCost < 0.75 * splitColumnsCost;
        }
    }

    /// <summary>The blocked loop nest on the calling thread.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RunSequential(bool transA, bool transB, int m, int n, int k, T alpha, T* a, long lda, T* b, long ldb, T beta, T* c, long ldc)
    {
        if (!UseVector512 && !UseVector256)
        {
            ScalarGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        PackBuffers buffers = t_buffers is { } existing && existing.Fits() ? existing : (t_buffers = new PackBuffers());
        T* packedA = buffers.PackedA, packedB = buffers.PackedB, tile = buffers.Tile;
        // Even k slices (e.g. 2×150 rather than 256 + 44) keep every slice's micro-kernel loop long.
        int kSlices = CeilDiv(k, KC);
        for (int jc = 0; jc < n; jc += NC)
        {
            int nc = Math.Min(NC, n - jc);
            for (int slice = 0; slice < kSlices; slice++)
            {
                int pc = (int)((long)k * slice / kSlices), kc = (int)((long)k * (slice + 1) / kSlices) - pc;
                PackB(transB, b, ldb, pc, jc, kc, nc, packedB);
                // Only the first k slice applies beta; later slices accumulate into the partial result.
                T sliceBeta = slice == 0 ? beta : T.One;
                for (int ic = 0; ic < m; ic += MC)
                {
                    int mc = Math.Min(MC, m - ic);
                    PackA(transA, a, lda, ic, pc, mc, kc, alpha, packedA);
                    MacroKernel(mc, nc, kc, packedA, packedB, c + ic * ldc + jc, ldc, sliceBeta, tile);
                }
            }
        }
    }

    /// <summary>
    /// All MR×NR tiles of one MC×NC block: B micro-panel outer, A micro-panels inner, so one B micro-panel is reused
    /// against the whole L2-resident A block while the hardware prefetcher streams it.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MacroKernel(int mc, int nc, int kc, T* packedA, T* packedB, T* c, long ldc, T beta, T* tile)
    {
        for (int jr = 0; jr < nc; jr += NR)
        {
            int columns = Math.Min(NR, nc - jr);
            T* bPanel = packedB + (long)jr * kc;
            for (int ir = 0; ir < mc; ir += MR)
            {
                int rows = Math.Min(MR, mc - ir);
                T* aPanel = packedA + (long)ir * kc;
                T* cTile = c + ir * ldc + jr;
                if (rows == MR && columns == NR)
                {
                    MicroKernel(kc, aPanel, bPanel, cTile, ldc, beta);
                }
                else
                {
                    // Edge tile: compute the full tile into scratch (the packed panels are zero-padded), copy the valid part.
                    MicroKernel(kc, aPanel, bPanel, tile, NR, T.Zero);
                    for (int r = 0; r < rows; r++)
                    {
                        T* source = tile + r * NR, target = cTile + r * ldc;
                        for (int j = 0; j < columns; j++)
                        {
                            target[j] = beta == T.Zero ? source[j] : source[j] + beta * target[j];
                        }
                    }
                }
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel(int kc, T* aPanel, T* bPanel, T* c, long ldc, T beta)
    {
        if (UseVector512)
        {
            MicroKernel512(kc, aPanel, bPanel, c, ldc, beta);
        }
        else
        {
            MicroKernel256(kc, aPanel, bPanel, c, ldc, beta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> MultiplyAdd(Vector512<T> left, Vector512<T> right, Vector512<T> addend)
    {
        if (typeof(T) == typeof(float))
        {
            return Vector512.FusedMultiplyAdd(left.As<T, float>(), right.As<T, float>(), addend.As<T, float>()).As<float, T>();
        }
        if (typeof(T) == typeof(double))
        {
            return Vector512.FusedMultiplyAdd(left.As<T, double>(), right.As<T, double>(), addend.As<T, double>()).As<double, T>();
        }
        return left * right + addend;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<T> MultiplyAdd(Vector256<T> left, Vector256<T> right, Vector256<T> addend)
    {
        if (typeof(T) == typeof(float))
        {
            return Vector256.FusedMultiplyAdd(left.As<T, float>(), right.As<T, float>(), addend.As<T, float>()).As<float, T>();
        }
        if (typeof(T) == typeof(double))
        {
            return Vector256.FusedMultiplyAdd(left.As<T, double>(), right.As<T, double>(), addend.As<T, double>()).As<double, T>();
        }
        return left * right + addend;
    }

    /// <summary>
    /// C[6×4W] = A panel (6×kc, k-major) · B panel (kc×4W, k-major) + beta·C. The 24 accumulators are locals so the JIT
    /// keeps them in zmm registers for the whole k loop; each k step is 4 vector loads, 6 broadcasts, 24 FMAs.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void MicroKernel512(int kc, T* aPanel, T* bPanel, T* c, long ldc, T beta)
    {
        int width = Vector512<T>.Count;
        PrefetchTile(c, ldc);
        // cRV accumulates tile row R, vector V (columns V·width ..); bV is the B panel's vector V at the current k.
        Vector512<T> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<T> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<T> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<T> c30 = default, c31 = default, c32 = default, c33 = default;
        Vector512<T> c40 = default, c41 = default, c42 = default, c43 = default;
        Vector512<T> c50 = default, c51 = default, c52 = default, c53 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector512<T> b0 = Vector512.Load(bPanel);
            Vector512<T> b1 = Vector512.Load(bPanel + width);
            Vector512<T> b2 = Vector512.Load(bPanel + 2 * width);
            Vector512<T> b3 = Vector512.Load(bPanel + 3 * width);
            Vector512<T> broadcast = Vector512.Create(aPanel[0]);
            c00 = MultiplyAdd(broadcast, b0, c00); c01 = MultiplyAdd(broadcast, b1, c01); c02 = MultiplyAdd(broadcast, b2, c02); c03 = MultiplyAdd(broadcast, b3, c03);
            broadcast = Vector512.Create(aPanel[1]);
            c10 = MultiplyAdd(broadcast, b0, c10); c11 = MultiplyAdd(broadcast, b1, c11); c12 = MultiplyAdd(broadcast, b2, c12); c13 = MultiplyAdd(broadcast, b3, c13);
            broadcast = Vector512.Create(aPanel[2]);
            c20 = MultiplyAdd(broadcast, b0, c20); c21 = MultiplyAdd(broadcast, b1, c21); c22 = MultiplyAdd(broadcast, b2, c22); c23 = MultiplyAdd(broadcast, b3, c23);
            broadcast = Vector512.Create(aPanel[3]);
            c30 = MultiplyAdd(broadcast, b0, c30); c31 = MultiplyAdd(broadcast, b1, c31); c32 = MultiplyAdd(broadcast, b2, c32); c33 = MultiplyAdd(broadcast, b3, c33);
            broadcast = Vector512.Create(aPanel[4]);
            c40 = MultiplyAdd(broadcast, b0, c40); c41 = MultiplyAdd(broadcast, b1, c41); c42 = MultiplyAdd(broadcast, b2, c42); c43 = MultiplyAdd(broadcast, b3, c43);
            broadcast = Vector512.Create(aPanel[5]);
            c50 = MultiplyAdd(broadcast, b0, c50); c51 = MultiplyAdd(broadcast, b1, c51); c52 = MultiplyAdd(broadcast, b2, c52); c53 = MultiplyAdd(broadcast, b3, c53);
            aPanel += MR;
            bPanel += 4 * width;
        }
        StoreRow512(c, c00, c01, c02, c03, beta);
        StoreRow512(c + ldc, c10, c11, c12, c13, beta);
        StoreRow512(c + 2 * ldc, c20, c21, c22, c23, beta);
        StoreRow512(c + 3 * ldc, c30, c31, c32, c33, beta);
        StoreRow512(c + 4 * ldc, c40, c41, c42, c43, beta);
        StoreRow512(c + 5 * ldc, c50, c51, c52, c53, beta);
    }

    /// <summary>
    /// Starts pulling the C tile (MR rows of 256 bytes, possibly straddling 5 lines) toward L1 so the read-modify-write after
    /// the k loop does not stall on L3/DRAM latency; the loop's FMAs hide the fetch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void PrefetchTile(T* c, long ldc)
    {
        if (Sse.IsSupported)
        {
            for (int r = 0; r < MR; r++)
            {
                byte* row = (byte*)(c + r * ldc);
                Sse.Prefetch0(row);
                Sse.Prefetch0(row + 64);
                Sse.Prefetch0(row + 128);
                Sse.Prefetch0(row + 192);
                Sse.Prefetch0(row + 255);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow512(T* row, Vector512<T> v0, Vector512<T> v1, Vector512<T> v2, Vector512<T> v3, T beta)
    {
        int width = Vector512<T>.Count;
        if (beta != T.Zero)
        {
            // beta == 0 must not read C (NaN there must not leak into the result).
            Vector512<T> betaVector = Vector512.Create(beta);
            v0 = MultiplyAdd(betaVector, Vector512.Load(row), v0);
            v1 = MultiplyAdd(betaVector, Vector512.Load(row + width), v1);
            v2 = MultiplyAdd(betaVector, Vector512.Load(row + 2 * width), v2);
            v3 = MultiplyAdd(betaVector, Vector512.Load(row + 3 * width), v3);
        }
        v0.Store(row);
        v1.Store(row + width);
        v2.Store(row + 2 * width);
        v3.Store(row + 3 * width);
    }

    /// <summary>AVX2 micro-kernel: C[6×2W] with 12 ymm accumulators (16 ymm registers without AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MicroKernel256(int kc, T* aPanel, T* bPanel, T* c, long ldc, T beta)
    {
        int width = Vector256<T>.Count;
        Vector256<T> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<T> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            Vector256<T> b0 = Vector256.Load(bPanel);
            Vector256<T> b1 = Vector256.Load(bPanel + width);
            Vector256<T> broadcast = Vector256.Create(aPanel[0]);
            c00 = MultiplyAdd(broadcast, b0, c00); c01 = MultiplyAdd(broadcast, b1, c01);
            broadcast = Vector256.Create(aPanel[1]);
            c10 = MultiplyAdd(broadcast, b0, c10); c11 = MultiplyAdd(broadcast, b1, c11);
            broadcast = Vector256.Create(aPanel[2]);
            c20 = MultiplyAdd(broadcast, b0, c20); c21 = MultiplyAdd(broadcast, b1, c21);
            broadcast = Vector256.Create(aPanel[3]);
            c30 = MultiplyAdd(broadcast, b0, c30); c31 = MultiplyAdd(broadcast, b1, c31);
            broadcast = Vector256.Create(aPanel[4]);
            c40 = MultiplyAdd(broadcast, b0, c40); c41 = MultiplyAdd(broadcast, b1, c41);
            broadcast = Vector256.Create(aPanel[5]);
            c50 = MultiplyAdd(broadcast, b0, c50); c51 = MultiplyAdd(broadcast, b1, c51);
            aPanel += MR;
            bPanel += 2 * width;
        }
        StoreRow256(c, c00, c01, beta);
        StoreRow256(c + ldc, c10, c11, beta);
        StoreRow256(c + 2 * ldc, c20, c21, beta);
        StoreRow256(c + 3 * ldc, c30, c31, beta);
        StoreRow256(c + 4 * ldc, c40, c41, beta);
        StoreRow256(c + 5 * ldc, c50, c51, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow256(T* row, Vector256<T> v0, Vector256<T> v1, T beta)
    {
        int width = Vector256<T>.Count;
        if (beta != T.Zero)
        {
            Vector256<T> betaVector = Vector256.Create(beta);
            v0 = MultiplyAdd(betaVector, Vector256.Load(row), v0);
            v1 = MultiplyAdd(betaVector, Vector256.Load(row + width), v1);
        }
        v0.Store(row);
        v1.Store(row + width);
    }

    /// <summary>A panels packed together from Aᵀ: 8 write streams stay within L1's 12 ways even when they alias (4 KiB strides).</summary>
    private const int PanelGroup = 8;

    /// <summary>
    /// Packs op(A)[ic..ic+mc, pc..pc+kc]·alpha into MR-row micro-panels, each stored k-major (MR values per k), rows past
    /// mc zero-padded. Folding alpha in here costs nothing and spares the micro-kernel a multiply. Panels are written in
    /// increasing order: the float transposing path spills two junk values into the next panel, which overwrites them.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackA(bool transA, T* a, long lda, int ic, int pc, int mc, int kc, T alpha, T* packed)
    {
        int fullPanels = mc / MR;
        if (transA)
        {
            for (int panel = 0; panel < fullPanels; panel += PanelGroup)
            {
                PackAPanelsFromColumns(a + (long)pc * lda + ic + panel * MR, lda, kc, Math.Min(PanelGroup, fullPanels - panel), alpha, packed + (long)panel * MR * kc);
            }
        }
        else
        {
            for (int panel = 0; panel < fullPanels; panel++)
            {
                PackAPanelFromRows(a + (ic + panel * MR) * lda + pc, lda, kc, alpha, packed + (long)panel * MR * kc);
            }
        }
        if (fullPanels * MR < mc)
        {
            PackAEdgePanel(transA, a, lda, ic + fullPanels * MR, pc, mc - fullPanels * MR, kc, alpha, packed + (long)fullPanels * MR * kc);
        }
    }

    /// <summary>op(A) = A: the panel's MR rows are contiguous along k, so 8×8 transposes turn 8 k steps at a time k-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackAPanelFromRows(T* source, long lda, int kc, T alpha, T* panel)
    {
        int p = 0;
        if (typeof(T) == typeof(float) && Avx.IsSupported)
        {
            float* rows = (float*)source, target = (float*)panel;
            float scale = Unsafe.As<T, float>(ref alpha);
            Vector256<float> scaleVector = Vector256.Create(scale);
            for (; p + 8 <= kc; p += 8)
            {
                Vector256<float> r0 = Vector256.Load(rows + p), r1 = Vector256.Load(rows + lda + p), r2 = Vector256.Load(rows + 2 * lda + p);
                Vector256<float> r3 = Vector256.Load(rows + 3 * lda + p), r4 = Vector256.Load(rows + 4 * lda + p), r5 = Vector256.Load(rows + 5 * lda + p);
                Vector256<float> r6 = Vector256<float>.Zero, r7 = Vector256<float>.Zero;
                Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                if (scale != 1f)
                {
                    (r0, r1, r2, r3) = (r0 * scaleVector, r1 * scaleVector, r2 * scaleVector, r3 * scaleVector);
                    (r4, r5, r6, r7) = (r4 * scaleVector, r5 * scaleVector, r6 * scaleVector, r7 * scaleVector);
                }
                // Each vector is one k step: MR = 6 values and 2 junk lanes, which the next store overwrites.
                float* step = target + p * MR;
                r0.Store(step);
                r1.Store(step + MR);
                r2.Store(step + 2 * MR);
                r3.Store(step + 3 * MR);
                r4.Store(step + 4 * MR);
                r5.Store(step + 5 * MR);
                r6.Store(step + 6 * MR);
                r7.Store(step + 7 * MR);
            }
        }
        for (; p < kc; p++)
        {
            T* target = panel + p * MR;
            for (int r = 0; r < MR; r++)
            {
                target[r] = alpha * source[r * lda + p];
            }
        }
    }

    /// <summary>
    /// op(A) = Aᵀ: each k step of a group of panels is panels·MR contiguous values of a stored row. Dealing a whole
    /// cache-line run out to several panels uses every fetched line fully; one panel at a time re-fetches each line
    /// MR values at a time from far-apart rows (measured 1.5× slower).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackAPanelsFromColumns(T* source, long lda, int kc, int panels, T alpha, T* packed)
    {
        long panelLength = (long)kc * MR;
        bool scale = alpha != T.One;
        if (typeof(T) == typeof(float))
        {
            // One 4-wide vector and two scalars per panel and k step rather than six scalar moves.
            float alphaValue = Unsafe.As<T, float>(ref alpha);
            Vector128<float> alphaVector = Vector128.Create(alphaValue);
            for (int p = 0; p < kc; p++, source += lda)
            {
                float* target = (float*)(packed + p * MR), values = (float*)source;
                for (int panel = 0; panel < panels; panel++, target += panelLength, values += MR)
                {
                    (Vector128.Load(values) * alphaVector).Store(target);
                    (target[4], target[5]) = (alphaValue * values[4], alphaValue * values[5]);
                }
            }
            return;
        }
        for (int p = 0; p < kc; p++, source += lda)
        {
            T* target = packed + p * MR;
            T* values = source;
            for (int panel = 0; panel < panels; panel++, target += panelLength, values += MR)
            {
                if (scale)
                {
                    (target[0], target[1], target[2]) = (alpha * values[0], alpha * values[1], alpha * values[2]);
                    (target[3], target[4], target[5]) = (alpha * values[3], alpha * values[4], alpha * values[5]);
                }
                else
                {
                    (target[0], target[1], target[2], target[3], target[4], target[5]) = (values[0], values[1], values[2], values[3], values[4], values[5]);
                }
            }
        }
    }

    /// <summary>A panel with fewer than MR rows (the bottom edge of op(A)): zero rows pad it to MR.</summary>
    private static void PackAEdgePanel(bool transA, T* a, long lda, int firstRow, int pc, int rows, int kc, T alpha, T* panel)
    {
        long rowStride = transA ? 1 : lda, columnStride = transA ? lda : 1;
        for (int p = 0; p < kc; p++)
        {
            T* target = panel + p * MR;
            for (int r = 0; r < MR; r++)
            {
                target[r] = r < rows ? alpha * a[(firstRow + r) * rowStride + (pc + p) * columnStride] : T.Zero;
            }
        }
    }

    /// <summary>
    /// Packs op(B)[pc..pc+kc, jc..jc+nc] into NR-column micro-panels, each stored k-major (NR values per k), columns past
    /// nc zero-padded.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void PackB(bool transB, T* b, long ldb, int pc, int jc, int kc, int nc, T* packed)
    {
        for (int j0 = 0; j0 < nc; j0 += NR)
        {
            int columns = Math.Min(NR, nc - j0);
            T* panel = packed + (long)j0 * kc;
            if (columns < NR)
            {
                PackBEdgePanel(transB, b, ldb, pc, jc + j0, kc, columns, panel);
            }
            else if (transB)
            {
                PackBPanelFromColumns(b + (jc + j0) * ldb + pc, ldb, kc, panel);
            }
            else
            {
                // op(B) = B: each k step copies NR contiguous values.
                T* source = b + (long)pc * ldb + jc + j0;
                for (int p = 0; p < kc; p++, source += ldb)
                {
                    T* target = panel + p * NR;
                    for (int j = 0; j < NR; j += Vector256<T>.Count)
                    {
                        Vector256.Load(source + j).Store(target + j);
                    }
                }
            }
        }
    }

    /// <summary>op(B) = Bᵀ: the panel's NR columns are stored rows, contiguous along k; 8×8 transposes turn them k-major.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackBPanelFromColumns(T* source, long ldb, int kc, T* panel)
    {
        int vectorEnd = 0;
        if (typeof(T) == typeof(float) && Avx.IsSupported)
        {
            vectorEnd = kc & ~7;
            for (int j0 = 0; j0 < NR; j0 += 8)
            {
                float* rows = (float*)(source + j0 * ldb);
                float* target = (float*)panel + j0;
                for (int p = 0; p < vectorEnd; p += 8)
                {
                    Vector256<float> r0 = Vector256.Load(rows + p), r1 = Vector256.Load(rows + ldb + p), r2 = Vector256.Load(rows + 2 * ldb + p), r3 = Vector256.Load(rows + 3 * ldb + p);
                    Vector256<float> r4 = Vector256.Load(rows + 4 * ldb + p), r5 = Vector256.Load(rows + 5 * ldb + p), r6 = Vector256.Load(rows + 6 * ldb + p), r7 = Vector256.Load(rows + 7 * ldb + p);
                    Transpose8x8(ref r0, ref r1, ref r2, ref r3, ref r4, ref r5, ref r6, ref r7);
                    float* step = target + p * NR;
                    r0.Store(step);
                    r1.Store(step + NR);
                    r2.Store(step + 2 * NR);
                    r3.Store(step + 3 * NR);
                    r4.Store(step + 4 * NR);
                    r5.Store(step + 5 * NR);
                    r6.Store(step + 6 * NR);
                    r7.Store(step + 7 * NR);
                }
            }
        }
        for (int j = 0; j < NR; j++)
        {
            T* column = source + j * ldb;
            for (int p = vectorEnd; p < kc; p++)
            {
                panel[p * NR + j] = column[p];
            }
        }
    }

    /// <summary>A B panel with fewer than NR columns (the right edge of op(B)): zero columns pad it to NR.</summary>
    private static void PackBEdgePanel(bool transB, T* b, long ldb, int pc, int firstColumn, int kc, int columns, T* panel)
    {
        long rowStride = transB ? 1 : ldb, columnStride = transB ? ldb : 1;
        for (int p = 0; p < kc; p++)
        {
            T* target = panel + p * NR;
            T* source = b + (pc + p) * rowStride + firstColumn * columnStride;
            for (int j = 0; j < NR; j++)
            {
                target[j] = j < columns ? source[j * columnStride] : T.Zero;
            }
        }
    }

    /// <summary>
    /// In-register transpose of an 8×8 float block (rows r0..r7 in, columns out in the same variables): interleave pairs
    /// of rows (t), then pairs of pairs (s), then combine 128-bit halves.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(ref Vector256<float> r0, ref Vector256<float> r1, ref Vector256<float> r2, ref Vector256<float> r3, ref Vector256<float> r4, ref Vector256<float> r5, ref Vector256<float> r6, ref Vector256<float> r7)
    {
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> s0 = Avx.Shuffle(t0, t2, 0x44), s1 = Avx.Shuffle(t0, t2, 0xEE), s2 = Avx.Shuffle(t1, t3, 0x44), s3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> s4 = Avx.Shuffle(t4, t6, 0x44), s5 = Avx.Shuffle(t4, t6, 0xEE), s6 = Avx.Shuffle(t5, t7, 0x44), s7 = Avx.Shuffle(t5, t7, 0xEE);
        r0 = Avx.Permute2x128(s0, s4, 0x20);
        r1 = Avx.Permute2x128(s1, s5, 0x20);
        r2 = Avx.Permute2x128(s2, s6, 0x20);
        r3 = Avx.Permute2x128(s3, s7, 0x20);
        r4 = Avx.Permute2x128(s0, s4, 0x31);
        r5 = Avx.Permute2x128(s1, s5, 0x31);
        r6 = Avx.Permute2x128(s2, s6, 0x31);
        r7 = Avx.Permute2x128(s3, s7, 0x31);
    }

    /// <summary>C = beta·C (the k == 0 or alpha == 0 case); beta == 0 writes zeros without reading.</summary>
    private static void ScaleC(int m, int n, T beta, T* c, long ldc)
    {
        for (int i = 0; i < m; i++)
        {
            T* row = c + i * ldc;
            for (int j = 0; j < n; j++)
            {
                row[j] = beta == T.Zero ? T.Zero : beta * row[j];
            }
        }
    }

    /// <summary>Fallback without usable SIMD: i-p-j loops, contiguous inner loop over C's row.</summary>
    private static void ScalarGemm(bool transA, bool transB, int m, int n, int k, T alpha, T* a, long lda, T* b, long ldb, T beta, T* c, long ldc)
    {
        ScaleC(m, n, beta, c, ldc);
        long aRowStride = transA ? 1 : lda, aColStride = transA ? lda : 1;
        long bRowStride = transB ? 1 : ldb, bColStride = transB ? ldb : 1;
        for (int i = 0; i < m; i++)
        {
            T* row = c + i * ldc;
            for (int p = 0; p < k; p++)
            {
                T scaled = alpha * a[i * aRowStride + p * aColStride];
                T* bRow = b + p * bRowStride;
                for (int j = 0; j < n; j++)
                {
                    row[j] += scaled * bRow[j * bColStride];
                }
            }
        }
    }

    private static int CeilDiv(int value, int divisor) => (value + divisor - 1) / divisor;

    /// <summary>64-byte aligned packing space for one thread, sized for the largest blocks.</summary>
    private sealed class PackBuffers
    {
        public readonly T* PackedA;
        public readonly T* PackedB;
        public readonly T* Tile;
        private readonly int _mc, _nc, _kc;

        public PackBuffers()
        {
            (_mc, _nc, _kc) = (MC, NC, KC);
            nuint elementSize = (nuint)sizeof(T);
            // + 8 elements: the last A panel's transposing stores spill two junk values past its end.
            PackedA = (T*)NativeMemory.AlignedAlloc((nuint)(CeilDiv(MC, MR) * MR * KC + 8) * elementSize, 64);
            PackedB = (T*)NativeMemory.AlignedAlloc((nuint)(CeilDiv(NC, NR) * NR * KC) * elementSize, 64);
            Tile = (T*)NativeMemory.AlignedAlloc((nuint)(MR * NR) * elementSize, 64);
        }

        /// <summary>False after the block sizes were retuned (tests and benchmarks may change them).</summary>
        public bool Fits() => _mc >= MC && _nc >= NC && _kc >= KC;

        ~PackBuffers()
        {
            NativeMemory.AlignedFree(PackedA);
            NativeMemory.AlignedFree(PackedB);
            NativeMemory.AlignedFree(Tile);
        }
    }
}
