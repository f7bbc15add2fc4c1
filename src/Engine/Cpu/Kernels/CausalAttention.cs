using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Cpu.Kernels;

/// <summary>
/// Fused causal scaled-dot-product attention on the CPU, FlashAttention-2 style:
/// the queryLen×keyLen score matrix is never materialised; each worker holds at most one
/// query-block × key-block tile of scores (plus one of probability gradients in backward).
/// </summary>
/// <remarks>
/// Layouts (all contiguous, row-major): q, o, dOut, dq: [batch, qHeads, queryLen, headDim];
/// k, v, dk, dv: [batch, kvHeads, keyLen, headDim]; logSumExp: [batch, qHeads, queryLen].
/// Query head h reads kv head h / (qHeads / kvHeads) (grouped-query attention).
/// Query row i sits at absolute position i + (keyLen - queryLen) and attends keys 0..that position.
/// T must be float or double (the vector paths are specialised for those two).
///
/// All matrix products go through one register-tiled micro-kernel, <see cref="Gemm{T}"/>:
/// C[m×n] (+)= Σ_p A[i, p] · B[p, j], with A read by broadcast through arbitrary row/column
/// strides (so Aᵀ costs nothing) and B, C rows read as whole vectors. The key block is exactly
/// four vectors wide, so a score tile row is one 4-vector register row of the micro-kernel.
/// B and C operands must have rows padded to the vector width; when headDim is not a multiple
/// of it, rows are copied into zero-padded scratch (the common 32/64/128 case reads in place).
///
/// Parallelism: forward splits over (batch, qHead, query block) work items, heaviest first,
/// handed out dynamically. Backward splits over (batch, kvHead) pairs; a worker owns the dk/dv
/// rows of its pair and the dq rows of the pair's query heads, so no atomics are needed. When
/// the pairs cannot keep all threads evenly busy, each pair's key blocks are further cut into
/// cost-balanced ranges; each range accumulates dq into its own partial buffer and a second
/// parallel pass sums the partials into dq.
/// </remarks>
public static unsafe class CausalAttention
{
    /// <summary>Keys per forward tile (rows of the transposed score tile Sᵀ). The query block is the tile's
    /// lane width, 4 vectors (64 float / 32 double queries).</summary>
    private const int ForwardKeyBlock = 64;

    /// <summary>Query rows per backward tile (the key block is 4 vectors); smaller than forward because
    /// backward keeps two score-sized tiles (P and dS) plus dK/dV accumulators live.</summary>
    private const int BackwardQueryBlock = 32;

    /// <summary>Register tile of the micro-kernel: rows × vectors.</summary>
    private const int TileRows = 4;
    private const int TileVectors = 4;

    // ------------------------------------------------------------------ public API

    /// <summary>
    /// o = softmax(scale·q·kᵀ + causal mask)·v, and logSumExp = log Σ_j exp(scale·q·k_j) per query row.
    /// </summary>
    public static void Forward<T>(T* q, T* k, T* v, T* o, T* logSumExp,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, T scale, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Validate<T>(batch, qHeads, kvHeads, queryLen, keyLen, headDim);
        if (batch == 0 || qHeads == 0 || queryLen == 0) return;

        var p = new Problem<T>(q, k, v, o, logSumExp, null, null, null, null,
            batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, forward: true);
        int queryBlocks = (queryLen + p.QueryBlock - 1) / p.QueryBlock;
        int items = queryBlocks * batch * qHeads;
        int workers = Workers(threads, items);
        var counter = new WorkCounter();

        RunWorkers(workers, _ =>
        {
            var scratch = new ForwardScratch<T>(p);
            try
            {
                int item;
                while ((item = counter.Take()) < items) ForwardItem(p, scratch, item, queryBlocks);
            }
            finally { scratch.Free(); }
        });
    }

    /// <summary>
    /// Gradients of Forward. Overwrites dq, dk, dv. o and logSumExp must be Forward's outputs for the same inputs.
    /// </summary>
    public static void Backward<T>(T* q, T* k, T* v, T* o, T* logSumExp, T* dOut, T* dq, T* dk, T* dv,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, T scale, int threads)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        Validate<T>(batch, qHeads, kvHeads, queryLen, keyLen, headDim);
        if (batch == 0 || qHeads == 0 || queryLen == 0) return;

        var p = new Problem<T>(q, k, v, o, logSumExp, dOut, dq, dk, dv,
            batch, qHeads, kvHeads, queryLen, keyLen, headDim, scale, forward: false);
        int pairs = batch * kvHeads;
        int threadCount = threads <= 0 ? Environment.ProcessorCount : threads;
        int keyBlocks = (keyLen + p.KeyBlock - 1) / p.KeyBlock;

        // Splitting key blocks costs a dq partial per range and a reduction pass, so only do it
        // when whole pairs would leave threads idle (fewer pairs than threads, or an uneven
        // remainder that is large relative to the per-thread share).
        int splits = 1;
        if (threadCount > 1 && (pairs < threadCount || (pairs % threadCount != 0 && pairs < 4 * threadCount)))
            splits = Math.Min(threadCount / Gcd(pairs, threadCount), keyBlocks);
        int[] keyBlockBounds = BalancedKeyBlockRanges(p, keyBlocks, splits);

        int items = pairs * splits;
        int workers = Workers(threadCount, items);
        nint partialStride = (nint)p.Group * queryLen * p.PaddedDim;
        T* dqPartials = splits > 1 ? Alloc<T>(partialStride * items) : null;
        try
        {
            var counter = new WorkCounter();
            RunWorkers(workers, _ =>
            {
                var scratch = new BackwardScratch<T>(p, ownDqBuffer: splits == 1);
                try
                {
                    int item;
                    while ((item = counter.Take()) < items)
                    {
                        int split = item % splits;
                        T* dqAccumulator = splits == 1 ? scratch.DqAccumulator : dqPartials + item * partialStride;
                        BackwardItem(p, scratch, item / splits, keyBlockBounds[split], keyBlockBounds[split + 1],
                            dqAccumulator, writeDq: splits == 1);
                    }
                }
                finally { scratch.Free(); }
            });

            if (splits > 1) ReduceDqPartials(p, dqPartials, splits, workers);
        }
        finally
        {
            if (dqPartials != null) NativeMemory.AlignedFree(dqPartials);
        }
    }

    // ------------------------------------------------------------------ forward

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ForwardItem<T>(in Problem<T> p, ForwardScratch<T> s, int item, int queryBlocks)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // Heaviest (latest) query blocks first so the dynamic queue ends with cheap items.
        int headCount = p.Batch * p.QHeads;
        int batchHead = item % headCount;
        int queryBlock = queryBlocks - 1 - item / headCount;
        int b = batchHead / p.QHeads, h = batchHead % p.QHeads;
        int kvHead = h / p.Group;

        int D = p.HeadDim, Dp = p.PaddedDim, Br = p.QueryBlock, Bc = p.KeyBlock;
        int row0 = queryBlock * Br;
        int rows = Math.Min(Br, p.QueryLen - row0);
        nint qRowIndex = (nint)batchHead * p.QueryLen + row0;
        T* kHead = p.K + ((nint)b * p.KvHeads + kvHead) * p.KeyLen * D;
        T* vHead = p.V + ((nint)b * p.KvHeads + kvHead) * p.KeyLen * D;
        int keysVisible = row0 + rows + p.Offset; // last row's position + 1

        // Scores are computed transposed, Sᵀ = K·(scale·Qᵀ): keys are rows and the block's queries are the
        // vector lanes. Only this block's Q is transposed (once), not every K tile, and the per-query softmax
        // statistics become plain lane-wise vector ops. Columns past `rows` are zero queries and are ignored.
        TransposeRows(p.Q + qRowIndex * D, rows, D, s.QueriesT, Br, p.Scale);

        T* runningMax = s.RunningMax, runningSum = s.RunningSum, correction = s.Correction;
        T* acc = s.OutAccumulator, probsT = s.ScoresT;
        new Span<T>(runningMax, Br).Fill(T.NegativeInfinity);
        new Span<T>(runningSum, Br).Clear();
        new Span<T>(acc, rows * Dp).Clear();

        for (int key0 = 0; key0 < keysVisible; key0 += Bc)
        {
            int keys = Math.Min(Bc, keysVisible - key0);
            Gemm(kHead + (nint)key0 * D, D, 1, s.QueriesT, Br, probsT, Br, keys, Br, D, accumulate: false);
            MaskTransposedAboveDiagonal(probsT, Br, keys, key0 - row0 - p.Offset);

            // Online softmax: Sᵀ becomes Pᵀ = exp(s − running max); past sums/outputs are rescaled when the max grows.
            OnlineSoftmaxColumns(probsT, Br, keys, runningMax, runningSum, correction);
            for (int r = 0; r < rows; r++)
                if (correction[r] != T.One) ScaleRow(acc + r * Dp, Dp, correction[r]);

            // O += P·V, reading P through Pᵀ's strides.
            T* vRows = p.DimIsPadded ? vHead + (nint)key0 * D : CopyRowsPadded(vHead + (nint)key0 * D, keys, D, Dp, s.ValuesPadded);
            Gemm(probsT, 1, Br, vRows, Dp, acc, Dp, rows, Dp, keys, accumulate: true);
        }

        T* oRows = p.O + qRowIndex * D;
        T* lseRows = p.LogSumExp + qRowIndex;
        for (int r = 0; r < rows; r++)
        {
            T inverseSum = T.One / runningSum[r];
            T* src = acc + r * Dp, dst = oRows + (nint)r * D;
            for (int d = 0; d < D; d++) dst[d] = src[d] * inverseSum;
            lseRows[r] = runningMax[r] + T.Log(runningSum[r]);
        }
    }

    // ------------------------------------------------------------------ backward

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BackwardItem<T>(in Problem<T> p, BackwardScratch<T> s, int pair, int keyBlockBegin, int keyBlockEnd,
        T* dqAccumulator, bool writeDq)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int b = pair / p.KvHeads, kvHead = pair % p.KvHeads;
        int D = p.HeadDim, Dp = p.PaddedDim, Bc = p.KeyBlock, Br = p.QueryBlock;
        int Tq = p.QueryLen, group = p.Group;
        int firstHead = kvHead * group;
        nint kvOffset = ((nint)b * p.KvHeads + kvHead) * p.KeyLen * D;
        T* kHead = p.K + kvOffset, vHead = p.V + kvOffset;
        T scale = p.Scale;

        new Span<T>(dqAccumulator, group * Tq * Dp).Clear();

        // Delta_i = rowsum(dO_i ∘ O_i): the softmax-Jacobian correction term, once per row.
        for (int hh = 0; hh < group; hh++)
        {
            nint rowBase = ((nint)b * p.QHeads + firstHead + hh) * Tq;
            for (int r = 0; r < Tq; r++)
                s.Delta[hh * Tq + r] = Dot(p.DOut + (rowBase + r) * D, p.O + (rowBase + r) * D, D);
        }

        T* probs = s.Probs, dScores = s.DScores, dKAcc = s.DKAccumulator, dVAcc = s.DVAccumulator;
        for (int keyBlock = keyBlockBegin; keyBlock < keyBlockEnd; keyBlock++)
        {
            int key0 = keyBlock * Bc;
            int keys = Math.Min(Bc, p.KeyLen - key0);
            TransposeRows(kHead + (nint)key0 * D, keys, D, s.KeysT, Bc, T.One);
            TransposeRows(vHead + (nint)key0 * D, keys, D, s.ValuesT, Bc, T.One);
            T* kRows = p.DimIsPadded ? kHead + (nint)key0 * D : CopyRowsPadded(kHead + (nint)key0 * D, keys, D, Dp, s.KeysPadded);
            new Span<T>(dKAcc, keys * Dp).Clear();
            new Span<T>(dVAcc, keys * Dp).Clear();

            // Rows above this key block's first key never see it; start exactly at the first row that does.
            int firstRow = Math.Max(0, key0 - p.Offset);
            for (int hh = 0; hh < group; hh++)
            {
                nint rowBase = ((nint)b * p.QHeads + firstHead + hh) * Tq;
                for (int row0 = firstRow; row0 < Tq; row0 += Br)
                {
                    int rows = Math.Min(Br, Tq - row0);
                    T* qRows = p.Q + (rowBase + row0) * D;
                    T* dOutRows = p.DOut + (rowBase + row0) * D;
                    T* lse = p.LogSumExp + rowBase + row0;
                    T* delta = s.Delta + hh * Tq + row0;

                    // Recompute P = exp(scale·q·kᵀ - lse) and dP = dO·vᵀ for the tile.
                    Gemm(qRows, D, 1, s.KeysT, Bc, probs, Bc, rows, Bc, D, accumulate: false);
                    Gemm(dOutRows, D, 1, s.ValuesT, Bc, dScores, Bc, rows, Bc, D, accumulate: false);
                    MaskAboveDiagonal(probs, Bc, rows, row0 + p.Offset - key0);
                    for (int r = 0; r < rows; r++)
                        SoftmaxGradRow(probs + r * Bc, dScores + r * Bc, Bc, scale, lse[r], delta[r]);

                    // dS now holds scale·P∘(dP − Delta), so the scale is already folded into dQ and dK.
                    T* qB = p.DimIsPadded ? qRows : CopyRowsPadded(qRows, rows, D, Dp, s.QueriesPadded);
                    T* dOutB = p.DimIsPadded ? dOutRows : CopyRowsPadded(dOutRows, rows, D, Dp, s.DOutPadded);
                    Gemm(probs, 1, Bc, dOutB, Dp, dVAcc, Dp, keys, Dp, rows, accumulate: true);   // dV += Pᵀ·dO
                    Gemm(dScores, 1, Bc, qB, Dp, dKAcc, Dp, keys, Dp, rows, accumulate: true);    // dK += dSᵀ·Q
                    Gemm(dScores, Bc, 1, kRows, Dp, dqAccumulator + ((nint)hh * Tq + row0) * Dp, Dp,
                        rows, Dp, keys, accumulate: true);                                        // dQ += dS·K
                }
            }

            CopyRowsUnpadded(dKAcc, keys, Dp, D, p.DK + kvOffset + (nint)key0 * D);
            CopyRowsUnpadded(dVAcc, keys, Dp, D, p.DV + kvOffset + (nint)key0 * D);
        }

        if (writeDq)
            CopyRowsUnpadded(dqAccumulator, group * Tq, Dp, D, p.DQ + ((nint)b * p.QHeads + firstHead) * Tq * D);
    }

    /// <summary>Sums the per-range dq partials of each (batch, kvHead) pair into dq.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ReduceDqPartials<T>(Problem<T> p, T* partials, int splits, int workers)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int Tq = p.QueryLen, D = p.HeadDim, Dp = p.PaddedDim;
        int items = p.Batch * p.QHeads; // one item per (batch, qHead): all of its query rows
        nint partialStride = (nint)p.Group * Tq * Dp;
        var counter = new WorkCounter();
        RunWorkers(Math.Min(workers, items), _ =>
        {
            int item;
            while ((item = counter.Take()) < items)
            {
                int b = item / p.QHeads, h = item % p.QHeads;
                int pair = b * p.KvHeads + h / p.Group;
                T* first = partials + pair * splits * partialStride + (nint)(h % p.Group) * Tq * Dp;
                T* dst = p.DQ + (nint)item * Tq * D;
                for (int r = 0; r < Tq; r++)
                {
                    T* dstRow = dst + (nint)r * D;
                    for (int d = 0; d < D; d++)
                    {
                        T sum = T.Zero;
                        for (int split = 0; split < splits; split++) sum += first[split * partialStride + (nint)r * Dp + d];
                        dstRow[d] = sum;
                    }
                }
            }
        });
    }

    /// <summary>
    /// Cuts key blocks into <paramref name="splits"/> contiguous ranges of roughly equal work.
    /// A key block's backward cost is proportional to the number of query rows that see it.
    /// </summary>
    private static int[] BalancedKeyBlockRanges<T>(in Problem<T> p, int keyBlocks, int splits)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var bounds = new int[splits + 1];
        bounds[splits] = keyBlocks;
        if (splits == 1) return bounds;
        var cumulative = new long[keyBlocks + 1];
        for (int kb = 0; kb < keyBlocks; kb++)
        {
            int keys = Math.Min(p.KeyBlock, p.KeyLen - kb * p.KeyBlock);
            cumulative[kb + 1] = cumulative[kb] + (long)keys * (p.QueryLen - Math.Max(0, kb * p.KeyBlock - p.Offset));
        }
        int next = 0;
        for (int split = 1; split < splits; split++)
        {
            long target = cumulative[keyBlocks] * split / splits;
            while (next < keyBlocks && cumulative[next] < target) next++;
            bounds[split] = next;
        }
        return bounds;
    }

    // ------------------------------------------------------------------ row operations

    /// <summary>Sets score[r, j] = -inf for keys past row r's causal limit; limitBias = row0 + offset - key0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaskAboveDiagonal<T>(T* scores, int ld, int rows, int limitBias)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        // Row r may see tile columns 0..r+limitBias inclusive. Also covers padding columns past the last key,
        // because the last tile is cut at the last row's limit.
        for (int r = 0; r < rows; r++)
        {
            int visible = r + limitBias + 1;
            if (visible >= ld) break; // later rows see even more
            T* row = scores + r * ld;
            for (int j = Math.Max(visible, 0); j < ld; j++) row[j] = T.NegativeInfinity;
        }
    }

    /// <summary>
    /// Transposed tile (keys as rows): sets scoresT[j, i] = −inf where query i precedes key j;
    /// bias = key0 − row0 − offset, so key row j hides query columns i &lt; j + bias.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void MaskTransposedAboveDiagonal<T>(T* scoresT, int ld, int keys, int bias)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int j = keys - 1; j >= 0; j--)
        {
            int hidden = Math.Min(ld, j + bias);
            if (hidden <= 0) break; // earlier keys hide even fewer queries
            new Span<T>(scoresT + (nint)j * ld, hidden).Fill(T.NegativeInfinity);
        }
    }

    /// <summary>
    /// One online-softmax step over a transposed score tile (rows = keys, columns = queries, ld a multiple of
    /// the vector width): per column, newMax = max(runningMax, max_j s), s ← exp(s − newMax) in place,
    /// correction = exp(runningMax − newMax), runningSum = runningSum·correction + Σ_j exp(...).
    /// Every column has a finite max after the first tile (key 0 is visible to every query), so no −inf − −inf.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void OnlineSoftmaxColumns<T>(T* scoresT, int ld, int keys, T* runningMax, T* runningSum, T* correction)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        if (Vector512.IsHardwareAccelerated)
        {
            for (int c = 0; c < ld; c += Vector512<T>.Count)
            {
                T* column = scoresT + c;
                var tileMax = Vector512.Create(T.NegativeInfinity);
                for (int j = 0; j < keys; j++) tileMax = Vector512.Max(tileMax, Vector512.Load(column + (nint)j * ld));
                var oldMax = Vector512.Load(runningMax + c);
                var newMax = Vector512.Max(oldMax, tileMax);
                var sum = Vector512<T>.Zero;
                for (int j = 0; j < keys; j++)
                {
                    var e = Exp(Vector512.Load(column + (nint)j * ld) - newMax);
                    e.Store(column + (nint)j * ld);
                    sum += e;
                }
                var factor = Exp(oldMax - newMax);
                newMax.Store(runningMax + c);
                factor.Store(correction + c);
                Fma(Vector512.Load(runningSum + c), factor, sum).Store(runningSum + c);
            }
            return;
        }

        for (int c = 0; c < ld; c++)
        {
            T tileMax = T.NegativeInfinity;
            for (int j = 0; j < keys; j++) tileMax = T.Max(tileMax, scoresT[(nint)j * ld + c]);
            T newMax = T.Max(runningMax[c], tileMax);
            T sum = T.Zero;
            for (int j = 0; j < keys; j++)
            {
                T e = T.Exp(scoresT[(nint)j * ld + c] - newMax);
                scoresT[(nint)j * ld + c] = e;
                sum += e;
            }
            correction[c] = T.Exp(runningMax[c] - newMax);
            runningSum[c] = runningSum[c] * correction[c] + sum;
            runningMax[c] = newMax;
        }
    }

    /// <summary>
    /// Backward per-row: P = exp(scale·s − lse) (masked → 0) in <paramref name="scoreRow"/>,
    /// dS = scale·P∘(dP − delta) in <paramref name="dRow"/> (which holds dP on entry).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void SoftmaxGradRow<T>(T* scoreRow, T* dRow, int n, T scale, T lse, T delta)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var vScale = Vector512.Create(scale);
            var vLse = Vector512.Create(lse);
            var vDelta = Vector512.Create(delta);
            var negInf = Vector512.Create(T.NegativeInfinity);
            for (; j + Vector512<T>.Count <= n; j += Vector512<T>.Count)
            {
                var x = Vector512.Load(scoreRow + j);
                var prob = Exp(Fma(x, vScale, -vLse));
                prob = Vector512.ConditionalSelect(Vector512.Equals(x, negInf), Vector512<T>.Zero, prob);
                prob.Store(scoreRow + j);
                (vScale * prob * (Vector512.Load(dRow + j) - vDelta)).Store(dRow + j);
            }
        }
        for (; j < n; j++)
        {
            T prob = T.IsNegativeInfinity(scoreRow[j]) ? T.Zero : T.Exp(scoreRow[j] * scale - lse);
            scoreRow[j] = prob;
            dRow[j] = scale * prob * (dRow[j] - delta);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ScaleRow<T>(T* row, int n, T factor) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(factor);
            for (; j + Vector512<T>.Count <= n; j += Vector512<T>.Count) (Vector512.Load(row + j) * f).Store(row + j);
        }
        for (; j < n; j++) row[j] *= factor;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T Dot<T>(T* a, T* b, int n) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T sum = T.Zero;
        int j = 0;
        if (Vector512.IsHardwareAccelerated && n >= Vector512<T>.Count)
        {
            var acc = Vector512<T>.Zero;
            for (; j + Vector512<T>.Count <= n; j += Vector512<T>.Count)
                acc = Fma(Vector512.Load(a + j), Vector512.Load(b + j), acc);
            sum = Vector512.Sum(acc);
        }
        for (; j < n; j++) sum += a[j] * b[j];
        return sum;
    }

    /// <summary>dst[d·ldDst + j] = factor·src[j·cols + d] for j &lt; rows; columns rows..ldDst are zeroed.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TransposeRows<T>(T* src, int rows, int cols, T* dst, int ldDst, T factor)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int j = 0; j < rows; j++)
        {
            T* srcRow = src + (nint)j * cols;
            for (int d = 0; d < cols; d++) dst[(nint)d * ldDst + j] = srcRow[d] * factor;
        }
        if (rows < ldDst)
            for (int d = 0; d < cols; d++) new Span<T>(dst + (nint)d * ldDst + rows, ldDst - rows).Clear();
    }

    /// <summary>Copies rows of width cols into rows of width ld, zero-filling the padding; returns dst.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static T* CopyRowsPadded<T>(T* src, int rows, int cols, int ld, T* dst) where T : unmanaged
    {
        for (int r = 0; r < rows; r++)
        {
            new ReadOnlySpan<T>(src + (nint)r * cols, cols).CopyTo(new Span<T>(dst + (nint)r * ld, cols));
            new Span<T>(dst + (nint)r * ld + cols, ld - cols).Clear();
        }
        return dst;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void CopyRowsUnpadded<T>(T* src, int rows, int ld, int cols, T* dst) where T : unmanaged
    {
        if (ld == cols)
        {
            new ReadOnlySpan<T>(src, rows * cols).CopyTo(new Span<T>(dst, rows * cols));
            return;
        }
        for (int r = 0; r < rows; r++)
            new ReadOnlySpan<T>(src + (nint)r * ld, cols).CopyTo(new Span<T>(dst + (nint)r * cols, cols));
    }

    // ------------------------------------------------------------------ micro-kernel

    /// <summary>
    /// C[i, j] (+)= Σ_p A[i·aRowStride + p·aColStride] · B[p·ldb + j] for i &lt; m, j &lt; n, p &lt; k.
    /// n must be a multiple of the vector width; B and C rows are read/written as whole vectors.
    /// With k == 0 and !accumulate, C is zeroed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Gemm<T>(T* a, nint aRowStride, nint aColStride, T* b, nint ldb, T* c, nint ldc,
        int m, int n, int k, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int width = VectorWidth<T>();
        int panel = TileVectors * width;
        // Column panels outer: one k×panel slice of B stays in L1 while all row groups stream past it.
        for (int j = 0; j < n; j += panel)
        {
            int vectors = Math.Min(TileVectors, (n - j) / width);
            T* bPanel = b + j;
            int i = 0;
            for (; i + TileRows <= m; i += TileRows)
                TileForVectors<T, Four>(vectors, a + i * aRowStride, aRowStride, aColStride, bPanel, ldb, c + i * ldc + j, ldc, k, accumulate);
            switch (m - i)
            {
                case 1: TileForVectors<T, One>(vectors, a + i * aRowStride, aRowStride, aColStride, bPanel, ldb, c + i * ldc + j, ldc, k, accumulate); break;
                case 2: TileForVectors<T, Two>(vectors, a + i * aRowStride, aRowStride, aColStride, bPanel, ldb, c + i * ldc + j, ldc, k, accumulate); break;
                case 3: TileForVectors<T, Three>(vectors, a + i * aRowStride, aRowStride, aColStride, bPanel, ldb, c + i * ldc + j, ldc, k, accumulate); break;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void TileForVectors<T, TRows>(int vectors, T* a, nint aRowStride, nint aColStride, T* b, nint ldb, T* c, nint ldc, int k, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TRows : struct, ICount
    {
        if (Vector512.IsHardwareAccelerated)
        {
            switch (vectors)
            {
                case 4: Tile512<T, TRows, Four>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                case 3: Tile512<T, TRows, Three>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                case 2: Tile512<T, TRows, Two>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                default: Tile512<T, TRows, One>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
            }
        }
        else
        {
            switch (vectors)
            {
                case 4: TileVector<T, TRows, Four>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                case 3: TileVector<T, TRows, Three>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                case 2: TileVector<T, TRows, Two>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
                default: TileVector<T, TRows, One>(a, aRowStride, aColStride, b, ldb, c, ldc, k, accumulate); break;
            }
        }
    }

    /// <summary>
    /// Register tile of TRows × TVectors accumulators (at most 4×4 = 16 of the 32 zmm registers).
    /// TRows/TVectors are value-type constants, so the JIT specialises each shape and drops the
    /// unused accumulators; one source covers all 16 edge shapes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile512<T, TRows, TVectors>(T* a, nint aRowStride, nint aColStride, T* b, nint ldb, T* c, nint ldc, int k, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TRows : struct, ICount
        where TVectors : struct, ICount
    {
        nint w = Vector512<T>.Count;
        int R = TRows.Value, V = TVectors.Value;
        T* c0 = c, c1 = c + ldc, c2 = c + 2 * ldc, c3 = c + 3 * ldc;
        Vector512<T> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector512<T> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector512<T> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector512<T> c30 = default, c31 = default, c32 = default, c33 = default;
        if (accumulate)
        {
            c00 = Vector512.Load(c0); if (V > 1) c01 = Vector512.Load(c0 + w); if (V > 2) c02 = Vector512.Load(c0 + 2 * w); if (V > 3) c03 = Vector512.Load(c0 + 3 * w);
            if (R > 1) { c10 = Vector512.Load(c1); if (V > 1) c11 = Vector512.Load(c1 + w); if (V > 2) c12 = Vector512.Load(c1 + 2 * w); if (V > 3) c13 = Vector512.Load(c1 + 3 * w); }
            if (R > 2) { c20 = Vector512.Load(c2); if (V > 1) c21 = Vector512.Load(c2 + w); if (V > 2) c22 = Vector512.Load(c2 + 2 * w); if (V > 3) c23 = Vector512.Load(c2 + 3 * w); }
            if (R > 3) { c30 = Vector512.Load(c3); if (V > 1) c31 = Vector512.Load(c3 + w); if (V > 2) c32 = Vector512.Load(c3 + 2 * w); if (V > 3) c33 = Vector512.Load(c3 + 3 * w); }
        }

        T* a0 = a, a1 = a + aRowStride, a2 = a + 2 * aRowStride, a3 = a + 3 * aRowStride;
        for (int p = 0; p < k; p++)
        {
            Vector512<T> b0 = Vector512.Load(b), b1 = default, b2 = default, b3 = default;
            if (V > 1) b1 = Vector512.Load(b + w);
            if (V > 2) b2 = Vector512.Load(b + 2 * w);
            if (V > 3) b3 = Vector512.Load(b + 3 * w);

            var x = Vector512.Create(*a0);
            c00 = Fma(x, b0, c00); if (V > 1) c01 = Fma(x, b1, c01); if (V > 2) c02 = Fma(x, b2, c02); if (V > 3) c03 = Fma(x, b3, c03);
            if (R > 1) { x = Vector512.Create(*a1); c10 = Fma(x, b0, c10); if (V > 1) c11 = Fma(x, b1, c11); if (V > 2) c12 = Fma(x, b2, c12); if (V > 3) c13 = Fma(x, b3, c13); }
            if (R > 2) { x = Vector512.Create(*a2); c20 = Fma(x, b0, c20); if (V > 1) c21 = Fma(x, b1, c21); if (V > 2) c22 = Fma(x, b2, c22); if (V > 3) c23 = Fma(x, b3, c23); }
            if (R > 3) { x = Vector512.Create(*a3); c30 = Fma(x, b0, c30); if (V > 1) c31 = Fma(x, b1, c31); if (V > 2) c32 = Fma(x, b2, c32); if (V > 3) c33 = Fma(x, b3, c33); }

            a0 += aColStride; a1 += aColStride; a2 += aColStride; a3 += aColStride;
            b += ldb;
        }

        c00.Store(c0); if (V > 1) c01.Store(c0 + w); if (V > 2) c02.Store(c0 + 2 * w); if (V > 3) c03.Store(c0 + 3 * w);
        if (R > 1) { c10.Store(c1); if (V > 1) c11.Store(c1 + w); if (V > 2) c12.Store(c1 + 2 * w); if (V > 3) c13.Store(c1 + 3 * w); }
        if (R > 2) { c20.Store(c2); if (V > 1) c21.Store(c2 + w); if (V > 2) c22.Store(c2 + 2 * w); if (V > 3) c23.Store(c2 + 3 * w); }
        if (R > 3) { c30.Store(c3); if (V > 1) c31.Store(c3 + w); if (V > 2) c32.Store(c3 + 2 * w); if (V > 3) c33.Store(c3 + 3 * w); }
    }

    /// <summary>Same tile with <see cref="Vector{T}"/> for machines without accelerated 512-bit vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileVector<T, TRows, TVectors>(T* a, nint aRowStride, nint aColStride, T* b, nint ldb, T* c, nint ldc, int k, bool accumulate)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TRows : struct, ICount
        where TVectors : struct, ICount
    {
        nint w = Vector<T>.Count;
        int R = TRows.Value, V = TVectors.Value;
        T* c0 = c, c1 = c + ldc, c2 = c + 2 * ldc, c3 = c + 3 * ldc;
        Vector<T> c00 = default, c01 = default, c02 = default, c03 = default;
        Vector<T> c10 = default, c11 = default, c12 = default, c13 = default;
        Vector<T> c20 = default, c21 = default, c22 = default, c23 = default;
        Vector<T> c30 = default, c31 = default, c32 = default, c33 = default;
        if (accumulate)
        {
            c00 = Vector.Load(c0); if (V > 1) c01 = Vector.Load(c0 + w); if (V > 2) c02 = Vector.Load(c0 + 2 * w); if (V > 3) c03 = Vector.Load(c0 + 3 * w);
            if (R > 1) { c10 = Vector.Load(c1); if (V > 1) c11 = Vector.Load(c1 + w); if (V > 2) c12 = Vector.Load(c1 + 2 * w); if (V > 3) c13 = Vector.Load(c1 + 3 * w); }
            if (R > 2) { c20 = Vector.Load(c2); if (V > 1) c21 = Vector.Load(c2 + w); if (V > 2) c22 = Vector.Load(c2 + 2 * w); if (V > 3) c23 = Vector.Load(c2 + 3 * w); }
            if (R > 3) { c30 = Vector.Load(c3); if (V > 1) c31 = Vector.Load(c3 + w); if (V > 2) c32 = Vector.Load(c3 + 2 * w); if (V > 3) c33 = Vector.Load(c3 + 3 * w); }
        }

        T* a0 = a, a1 = a + aRowStride, a2 = a + 2 * aRowStride, a3 = a + 3 * aRowStride;
        for (int p = 0; p < k; p++)
        {
            Vector<T> b0 = Vector.Load(b), b1 = default, b2 = default, b3 = default;
            if (V > 1) b1 = Vector.Load(b + w);
            if (V > 2) b2 = Vector.Load(b + 2 * w);
            if (V > 3) b3 = Vector.Load(b + 3 * w);

            var x = new Vector<T>(*a0);
            c00 = Fma(x, b0, c00); if (V > 1) c01 = Fma(x, b1, c01); if (V > 2) c02 = Fma(x, b2, c02); if (V > 3) c03 = Fma(x, b3, c03);
            if (R > 1) { x = new Vector<T>(*a1); c10 = Fma(x, b0, c10); if (V > 1) c11 = Fma(x, b1, c11); if (V > 2) c12 = Fma(x, b2, c12); if (V > 3) c13 = Fma(x, b3, c13); }
            if (R > 2) { x = new Vector<T>(*a2); c20 = Fma(x, b0, c20); if (V > 1) c21 = Fma(x, b1, c21); if (V > 2) c22 = Fma(x, b2, c22); if (V > 3) c23 = Fma(x, b3, c23); }
            if (R > 3) { x = new Vector<T>(*a3); c30 = Fma(x, b0, c30); if (V > 1) c31 = Fma(x, b1, c31); if (V > 2) c32 = Fma(x, b2, c32); if (V > 3) c33 = Fma(x, b3, c33); }

            a0 += aColStride; a1 += aColStride; a2 += aColStride; a3 += aColStride;
            b += ldb;
        }

        c00.Store(c0); if (V > 1) c01.Store(c0 + w); if (V > 2) c02.Store(c0 + 2 * w); if (V > 3) c03.Store(c0 + 3 * w);
        if (R > 1) { c10.Store(c1); if (V > 1) c11.Store(c1 + w); if (V > 2) c12.Store(c1 + 2 * w); if (V > 3) c13.Store(c1 + 3 * w); }
        if (R > 2) { c20.Store(c2); if (V > 1) c21.Store(c2 + w); if (V > 2) c22.Store(c2 + 2 * w); if (V > 3) c23.Store(c2 + 3 * w); }
        if (R > 3) { c30.Store(c3); if (V > 1) c31.Store(c3 + w); if (V > 2) c32.Store(c3 + 2 * w); if (V > 3) c33.Store(c3 + 3 * w); }
    }

    // ------------------------------------------------------------------ vector helpers (T is float or double)

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Fma<T>(Vector512<T> a, Vector512<T> b, Vector512<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector512.FusedMultiplyAdd(a.AsSingle(), b.AsSingle(), c.AsSingle()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector512.FusedMultiplyAdd(a.AsDouble(), b.AsDouble(), c.AsDouble()).As<double, T>();
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<T> Fma<T>(Vector<T> a, Vector<T> b, Vector<T> c)
    {
        if (typeof(T) == typeof(float)) return Vector.FusedMultiplyAdd(a.As<T, float>(), b.As<T, float>(), c.As<T, float>()).As<float, T>();
        if (typeof(T) == typeof(double)) return Vector.FusedMultiplyAdd(a.As<T, double>(), b.As<T, double>(), c.As<T, double>()).As<double, T>();
        return a * b + c;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<T> Exp<T>(Vector512<T> x)
    {
        if (typeof(T) == typeof(float)) return ExpFloat(x.AsSingle()).As<float, T>();
        // float64 is the gradient-check type: keep the library's accurate exp there.
        if (typeof(T) == typeof(double)) return Vector512.Exp(x.AsDouble()).As<double, T>();
        throw new NotSupportedException();
    }

    /// <summary>
    /// Single-precision exp, within ~2 ulp: exp(x) = 2ⁿ·eʳ with n = round(x·log₂e) and r = x − n·ln2 (two-part
    /// Cody–Waite ln2), eʳ from Cephes' expf polynomial. Several times cheaper than Vector512.Exp(float), which
    /// evaluates in double; exp is a sizeable share of the forward. x &lt; −87 (incl. −inf, i.e. masked scores)
    /// gives exactly 0; x is capped at 88 to keep 2ⁿ finite.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> ExpFloat(Vector512<float> x)
    {
        var capped = Vector512.Min(x, Vector512.Create(88f));
        var n = Vector512.Round(capped * Vector512.Create(1.44269504088896341f));
        var r = Vector512.FusedMultiplyAdd(n, Vector512.Create(-0.693359375f), capped);
        r = Vector512.FusedMultiplyAdd(n, Vector512.Create(2.12194440e-4f), r);
        var poly = Vector512.FusedMultiplyAdd(Vector512.Create(1.9875691500e-4f), r, Vector512.Create(1.3981999507e-3f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(8.3334519073e-3f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(4.1665795894e-2f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(1.6666665459e-1f));
        poly = Vector512.FusedMultiplyAdd(poly, r, Vector512.Create(5.0000001201e-1f));
        var expR = Vector512.FusedMultiplyAdd(poly, r * r, r + Vector512<float>.One);
        var result = (expR.AsInt32() + (Vector512.ConvertToInt32(n) << 23)).AsSingle();
        return Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512.Create(-87f)), Vector512<float>.Zero, result);
    }

    private static int VectorWidth<T>() where T : unmanaged
        => Vector512.IsHardwareAccelerated ? Vector512<T>.Count : Vector<T>.Count;

    // ------------------------------------------------------------------ plumbing

    private static void Validate<T>(int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim)
    {
        if (typeof(T) != typeof(float) && typeof(T) != typeof(double))
            throw new NotSupportedException($"CausalAttention supports float and double, not {typeof(T).Name}.");
        if (batch < 0 || qHeads < 0 || queryLen < 0 || headDim <= 0)
            throw new ArgumentOutOfRangeException(nameof(batch), "Sizes must be non-negative and headDim positive.");
        if (kvHeads <= 0 || qHeads % kvHeads != 0)
            throw new ArgumentException($"qHeads ({qHeads}) must be a positive multiple of kvHeads ({kvHeads}).", nameof(kvHeads));
        if (keyLen < queryLen)
            throw new ArgumentException($"keyLen ({keyLen}) must be >= queryLen ({queryLen}).", nameof(keyLen));
    }

    private static int Workers(int threads, int items)
    {
        int t = threads <= 0 ? Environment.ProcessorCount : threads;
        return Math.Max(1, Math.Min(t, items));
    }

    /// <summary>Runs body(workerIndex) on <paramref name="workers"/> threads; with one worker, on the calling thread.</summary>
    private static void RunWorkers(int workers, Action<int> body)
    {
        if (workers <= 1) { body(0); return; }
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, body);
    }

    private static int Gcd(int a, int b)
    {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }

    private static T* Alloc<T>(nint count) where T : unmanaged
        => (T*)NativeMemory.AlignedAlloc((nuint)(Math.Max(count, 1) * sizeof(T)), 64);

    private sealed class WorkCounter
    {
        private int _next = -1;
        public int Take() => Interlocked.Increment(ref _next);
    }

    private interface ICount { static abstract int Value { get; } }
    private struct One : ICount { public static int Value => 1; }
    private struct Two : ICount { public static int Value => 2; }
    private struct Three : ICount { public static int Value => 3; }
    private struct Four : ICount { public static int Value => 4; }

    /// <summary>Pointers and derived sizes of one call.</summary>
    private readonly struct Problem<T> where T : unmanaged
    {
        public readonly T* Q, K, V, O, LogSumExp, DOut, DQ, DK, DV;
        public readonly int Batch, QHeads, KvHeads, QueryLen, KeyLen, HeadDim;
        public readonly T Scale;
        /// <summary>qHeads per kv head.</summary>
        public readonly int Group;
        /// <summary>keyLen − queryLen: absolute position of query row 0.</summary>
        public readonly int Offset;
        public readonly int QueryBlock, KeyBlock;
        /// <summary>headDim rounded up to the vector width (row stride of padded scratch).</summary>
        public readonly int PaddedDim;
        /// <summary>headDim is already a multiple of the vector width, so q/k/v/dO rows can be read in place.</summary>
        public readonly bool DimIsPadded;

        public Problem(T* q, T* k, T* v, T* o, T* logSumExp, T* dOut, T* dq, T* dk, T* dv,
            int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, T scale, bool forward)
        {
            Q = q; K = k; V = v; O = o; LogSumExp = logSumExp; DOut = dOut; DQ = dq; DK = dk; DV = dv;
            Batch = batch; QHeads = qHeads; KvHeads = kvHeads; QueryLen = queryLen; KeyLen = keyLen; HeadDim = headDim;
            Scale = scale;
            Group = qHeads / kvHeads;
            Offset = keyLen - queryLen;
            int width = VectorWidth<T>();
            // The block along the lanes of the score tile is one full register-tile row (4 vectors):
            // queries in forward (Sᵀ tiles), keys in backward (S tiles).
            QueryBlock = forward ? TileVectors * width : BackwardQueryBlock;
            KeyBlock = forward ? ForwardKeyBlock : TileVectors * width;
            PaddedDim = (headDim + width - 1) / width * width;
            DimIsPadded = PaddedDim == headDim;
        }
    }

    /// <summary>Per-worker forward buffers, allocated once per call and reused for every tile.</summary>
    private sealed class ForwardScratch<T> where T : unmanaged
    {
        public readonly T* QueriesT, ValuesPadded, ScoresT, OutAccumulator, RunningMax, RunningSum, Correction;
        private readonly void* _block;

        public ForwardScratch(in Problem<T> p)
        {
            nint queriesT = (nint)p.PaddedDim * p.QueryBlock, values = (nint)p.KeyBlock * p.PaddedDim;
            nint scores = (nint)p.KeyBlock * p.QueryBlock, acc = (nint)p.QueryBlock * p.PaddedDim;
            nint rows = RoundUp(p.QueryBlock);
            T* block = Alloc<T>(queriesT + values + scores + acc + 3 * rows);
            _block = block;
            QueriesT = block; block += queriesT;
            ValuesPadded = block; block += values;
            ScoresT = block; block += scores;
            OutAccumulator = block; block += acc;
            RunningMax = block; block += rows;
            RunningSum = block; block += rows;
            Correction = block;
        }

        public void Free() => NativeMemory.AlignedFree(_block);
    }

    /// <summary>Per-worker backward buffers, allocated once per call and reused for every tile.</summary>
    private sealed class BackwardScratch<T> where T : unmanaged
    {
        public readonly T* KeysT, ValuesT, KeysPadded, QueriesPadded, DOutPadded, Probs, DScores, DKAccumulator, DVAccumulator, Delta, DqAccumulator;
        private readonly void* _block;

        public BackwardScratch(in Problem<T> p, bool ownDqBuffer)
        {
            nint transposed = (nint)p.PaddedDim * p.KeyBlock, keyRows = (nint)p.KeyBlock * p.PaddedDim;
            nint queryRows = (nint)p.QueryBlock * p.PaddedDim, tile = (nint)p.QueryBlock * p.KeyBlock;
            nint delta = RoundUp((nint)p.Group * p.QueryLen);
            nint dq = ownDqBuffer ? (nint)p.Group * p.QueryLen * p.PaddedDim : 0;
            T* block = Alloc<T>(2 * transposed + 3 * keyRows + 2 * queryRows + 2 * tile + delta + dq);
            _block = block;
            KeysT = block; block += transposed;
            ValuesT = block; block += transposed;
            KeysPadded = block; block += keyRows;
            DKAccumulator = block; block += keyRows;
            DVAccumulator = block; block += keyRows;
            QueriesPadded = block; block += queryRows;
            DOutPadded = block; block += queryRows;
            Probs = block; block += tile;
            DScores = block; block += tile;
            Delta = block; block += delta;
            DqAccumulator = ownDqBuffer ? block : null;
        }

        public void Free() => NativeMemory.AlignedFree(_block);
    }

    /// <summary>Rounds a scratch length up to 64 elements so following buffers stay 64-byte aligned.</summary>
    private static nint RoundUp(nint count) => (count + 63) & ~(nint)63;
}
