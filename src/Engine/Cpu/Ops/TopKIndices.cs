using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Cpu;

/// <summary>
/// The k largest entries of a whole tensor (SpIEL's drop and regrow choices over a weight matrix of up to ~50M entries), by
/// radix select instead of a sort. Each score maps to an unsigned key with the same order (<see cref="OrderedKeys"/>); a
/// pass counts, per chunk of the array, the next 16 bits of the keys that still share the prefix found so far, and the
/// bucket holding the k-th largest extends the prefix (float32: 2 passes, float64: at most 4). Every chunk's counts of
/// keys above the prefix and equal to it then give each chunk its place in the output, and a last pass writes the indices
/// of the keys above the threshold, and of the lowest-index ties, in ascending order. Linear time, threaded over chunks.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    /// <summary>Bits of the key decided per pass: 2^16 counters per chunk (256 KiB) stay in L2.</summary>
    private const int DigitBits = 16;

    private const int BucketCount = 1 << DigitBits;

    /// <summary>
    /// The counters, kept per calling thread across calls: allocating 256 KiB+ per call (large-object heap, zeroed, fresh
    /// pages) cost ~1 ms, more than selecting among tens of thousands of scores.
    /// </summary>
    [ThreadStatic] private static int[]? selectionHistograms;

    [ThreadStatic] private static long[]? selectionTotals;

    private static T[] SelectionBuffer<T>(ref T[]? buffer, int length)
    {
        if (buffer is null || buffer.Length != length)
        {
            buffer = new T[length];
        }
        return buffer;
    }

    /// <summary>Fewest elements per chunk: each chunk clears and sums 2^16 counters per pass, which must stay small beside its scan.</summary>
    private const long MinimumSelectionChunk = 1 << 18;

    public void TopKIndices(Tensor scores, int k, bool absolute, Tensor resultIndices)
    {
        const string name = "top-k indices";
        Check.SameDevice(name, scores, resultIndices);
        RequireContiguous(name, scores, "scores");
        if (scores.ElementCount > int.MaxValue)
        {
            throw new ArgumentException($"{name}: scores {scores.Describe()} have more elements than int32 indices can address");
        }
        if (k < 1 || k > scores.ElementCount)
        {
            throw new ArgumentException($"{name}: k = {k} must be between 1 and the element count {scores.ElementCount} of scores {scores.Describe()}");
        }
        if (resultIndices.DType != DType.Int32 || resultIndices.Rank != 1 || resultIndices.Dim(0) != k)
        {
            throw new ArgumentException($"{name}: result indices {resultIndices.Describe()} must be int32 [{k}] for k = {k}");
        }
        RequireContiguous(name, resultIndices, "result indices");
        DispatchFloat(name, scores,
            () => TopKIndicesRun<float, uint>(scores, k, absolute, resultIndices),
            () => TopKIndicesRun<double, ulong>(scores, k, absolute, resultIndices));
    }

    private void TopKIndicesRun<T, TKey>(Tensor scores, int k, bool absolute, Tensor resultIndices)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
    {
        T* values = Pointer<T>(scores);
        long count = scores.ElementCount;
        int chunkCount = (int)Math.Min(Threads, Math.Max(1, count / MinimumSelectionChunk));
        long ChunkStart(int chunk) => count * chunk / chunkCount;
        int keyBits = sizeof(TKey) * 8;
        // The counts of the latest pass, per chunk, and per chunk the elements already known to rank above the k-th.
        var histograms = SelectionBuffer(ref selectionHistograms, chunkCount * BucketCount);
        var aboveCounts = new long[chunkCount];
        var totals = SelectionBuffer(ref selectionTotals, BucketCount);
        TKey prefix = TKey.Zero;
        int prefixShift = keyBits;
        int digit = 0;
        // Places still open among the elements whose key starts with the prefix.
        long open = k;
        for (int shift = keyBits - DigitBits; shift >= 0; shift -= DigitBits)
        {
            Array.Clear(histograms);
            bool firstPass = prefixShift == keyBits;
            bool sawNaN = false;
            CpuParallel.For(chunkCount, Threads, 1, (start, end) =>
            {
                TKey* digitBuffer = stackalloc TKey[Vector<TKey>.Count];
                for (int chunk = (int)start; chunk < end; chunk++)
                {
                    fixed (int* histogram = &histograms[chunk * BucketCount])
                    {
                        bool ordered;
                        if (firstPass)
                        {
                            var counter = new DigitCounter<TKey>(histogram, shift, digitBuffer);
                            ordered = VisitKeys<T, TKey, DigitCounter<TKey>>(values, ChunkStart(chunk), ChunkStart(chunk + 1), absolute, ref counter);
                        }
                        else
                        {
                            var counter = new PrefixedDigitCounter<TKey>(histogram, shift, prefix, prefixShift);
                            ordered = VisitKeys<T, TKey, PrefixedDigitCounter<TKey>>(values, ChunkStart(chunk), ChunkStart(chunk + 1), absolute, ref counter);
                        }
                        if (!ordered)
                        {
                            sawNaN = true;
                        }
                    }
                }
            });
            if (sawNaN)
            {
                ThrowForFirstNaN(scores, values);
            }
            Array.Clear(totals);
            for (int chunk = 0; chunk < chunkCount; chunk++)
            {
                for (int bucket = 0; bucket < BucketCount; bucket++)
                {
                    totals[bucket] += histograms[chunk * BucketCount + bucket];
                }
            }
            // From the top bucket down to the one that holds the k-th largest of the candidates.
            digit = BucketCount - 1;
            while (totals[digit] < open)
            {
                open -= totals[digit];
                digit--;
            }
            for (int chunk = 0; chunk < chunkCount; chunk++)
            {
                for (int bucket = digit + 1; bucket < BucketCount; bucket++)
                {
                    aboveCounts[chunk] += histograms[chunk * BucketCount + bucket];
                }
            }
            prefix = (prefix << DigitBits) | TKey.CreateTruncating(digit);
            prefixShift = shift;
            if (totals[digit] == open)
            {
                // The whole bucket is taken: finer digits would not change which elements are.
                break;
            }
        }
        // Ties at the threshold go to the lowest indices: chunk by chunk in index order until `open` are taken.
        var outputStarts = new long[chunkCount];
        var tiesTaken = new long[chunkCount];
        long written = 0, tiesBefore = 0;
        for (int chunk = 0; chunk < chunkCount; chunk++)
        {
            long ties = histograms[chunk * BucketCount + digit];
            tiesTaken[chunk] = Math.Clamp(open - tiesBefore, 0, ties);
            tiesBefore += ties;
            outputStarts[chunk] = written;
            written += aboveCounts[chunk] + tiesTaken[chunk];
        }
        int* output = Pointer<int>(resultIndices);
        CpuParallel.For(chunkCount, Threads, 1, (start, end) =>
        {
            for (int chunk = (int)start; chunk < end; chunk++)
            {
                var collector = new ThresholdCollector<TKey>(output + outputStarts[chunk], prefix, prefixShift, tiesTaken[chunk]);
                VisitKeys<T, TKey, ThresholdCollector<TKey>>(values, ChunkStart(chunk), ChunkStart(chunk + 1), absolute, ref collector);
            }
        });
    }

    private static void ThrowForFirstNaN<T>(Tensor scores, T* values) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        long index = 0;
        while (!T.IsNaN(values[index]))
        {
            index++;
        }
        throw new ArgumentException($"top-k indices: scores {scores.Describe()} hold NaN at index {index}; NaN has no rank, so the top k is undefined");
    }

    /// <summary>
    /// Unsigned keys in the order of the scores (of |score| when <paramref name="absolute"/>): the IEEE bits of a
    /// non-negative score with the sign bit set, and all bits of a negative score flipped (a larger magnitude gives a
    /// smaller key). −0 becomes +0 first so that the two zeros tie. −inf gets the smallest key of all non-NaN scores.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<TKey> OrderedKeys<T, TKey>(Vector<T> scores, bool absolute)
        where T : unmanaged where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
    {
        var bits = Vector.As<T, TKey>(scores);
        var signBit = new Vector<TKey>(TKey.One << (sizeof(TKey) * 8 - 1));
        var magnitude = Vector.AndNot(bits, signBit);
        if (absolute)
        {
            return magnitude;
        }
        bits = Vector.AndNot(bits, Vector.Equals(magnitude, Vector<TKey>.Zero));
        var negative = Vector.Equals(bits & signBit, signBit);
        return bits ^ (negative | signBit);
    }

    /// <summary>
    /// Feeds the keys of scores[start, end) to the visitor a vector at a time; the tail goes as one zero-padded vector whose
    /// lanes past laneCount the visitor ignores. Returns false if any score was NaN. Compiled fully optimized at once:
    /// SpIEL selects every few dozen steps, too rarely for tiered compilation to promote this loop from tier 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool VisitKeys<T, TKey, TVisitor>(T* values, long start, long end, bool absolute, ref TVisitor visitor)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
        where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
        where TVisitor : struct, IKeyVisitor<TKey>
    {
        bool ordered = true;
        long index = start;
        for (; index <= end - Vector<T>.Count; index += Vector<T>.Count)
        {
            var scores = Vector.Load(values + index);
            ordered &= Vector.EqualsAll(scores, scores);
            visitor.Visit(OrderedKeys<T, TKey>(scores, absolute), index, Vector<T>.Count);
        }
        if (index < end)
        {
            Span<T> padded = stackalloc T[Vector<T>.Count];
            padded.Clear();
            new ReadOnlySpan<T>(values + index, (int)(end - index)).CopyTo(padded);
            var scores = new Vector<T>(padded);
            ordered &= Vector.EqualsAll(scores, scores);
            visitor.Visit(OrderedKeys<T, TKey>(scores, absolute), index, (int)(end - index));
        }
        return ordered;
    }

    /// <summary>A pass over one chunk of keys: <paramref name="firstIndex"/> is the flat index of lane 0.</summary>
    private interface IKeyVisitor<TKey> where TKey : unmanaged
    {
        void Visit(Vector<TKey> keys, long firstIndex, int laneCount);
    }

    /// <summary>
    /// The first pass: counts the top digit of every key (the shift leaves only those 16 bits). The digits go through a
    /// one-vector buffer (the caller's): reading lanes out of a register one by one costs more than a store and scalar loads.
    /// </summary>
    private readonly struct DigitCounter<TKey>(int* histogram, int shift, TKey* digitBuffer) : IKeyVisitor<TKey>
        where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Visit(Vector<TKey> keys, long firstIndex, int laneCount)
        {
            (keys >>> shift).Store(digitBuffer);
            for (int lane = 0; lane < laneCount; lane++)
            {
                histogram[int.CreateTruncating(digitBuffer[lane])]++;
            }
        }
    }

    /// <summary>Later passes: counts the next digit of the keys that start with the prefix chosen so far (few; whole vectors of others are skipped).</summary>
    private readonly struct PrefixedDigitCounter<TKey>(int* histogram, int shift, TKey prefix, int prefixShift) : IKeyVisitor<TKey>
        where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Visit(Vector<TKey> keys, long firstIndex, int laneCount)
        {
            var matches = Vector.Equals(keys >>> prefixShift, new Vector<TKey>(prefix));
            if (matches == Vector<TKey>.Zero)
            {
                return;
            }
            var digits = (keys >>> shift) & new Vector<TKey>(TKey.CreateTruncating(BucketCount - 1));
            for (int lane = 0; lane < laneCount; lane++)
            {
                if (matches[lane] != TKey.Zero)
                {
                    histogram[int.CreateTruncating(digits[lane])]++;
                }
            }
        }
    }

    /// <summary>The last pass: writes, in index order, every index whose key is above the threshold prefix and the first `ties` equal to it.</summary>
    private struct ThresholdCollector<TKey>(int* output, TKey prefix, int prefixShift, long ties) : IKeyVisitor<TKey>
        where TKey : unmanaged, IBinaryInteger<TKey>, IUnsignedNumber<TKey>
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Visit(Vector<TKey> keys, long firstIndex, int laneCount)
        {
            var leading = keys >>> prefixShift;
            if (!Vector.GreaterThanOrEqualAny(leading, new Vector<TKey>(prefix)))
            {
                return;
            }
            for (int lane = 0; lane < laneCount; lane++)
            {
                if (leading[lane] > prefix || (leading[lane] == prefix && ties > 0))
                {
                    ties -= leading[lane] == prefix ? 1 : 0;
                    *output++ = (int)(firstIndex + lane);
                }
            }
        }
    }
}
