using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>
/// Row gather/scatter-add (embedding lookup and its gradient, MEFT row gathers) and flat gather/scatter/scatter-add (SpIEL's
/// sparse deltas). Scatter-adds are deterministic: duplicates are summed in index order. The flat operations check every
/// index before touching memory, so a bad index fails with one clear error and leaves the destination as it was.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void IndexSelect(Tensor source, Tensor indices, Tensor result)
    {
        var (rowWidth, count) = ValidateRows("index-select", source, indices, result);
        // A row copy is the same for every dtype, so it works on bytes.
        byte* from = BytePointer(source), to = BytePointer(result);
        long rowBytes = rowWidth * source.DType.SizeInBytes();
        long rows = source.Dim(0);
        CpuParallel.For(count, Threads, Math.Max(1, 65536 / Math.Max(1, rowBytes)), (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                long row = ReadIndex(indices, i, rows, "index-select");
                Buffer.MemoryCopy(from + row * rowBytes, to + i * rowBytes, rowBytes, rowBytes);
            }
        });
    }

    public void IndexAdd(Tensor destination, Tensor indices, Tensor source)
    {
        var (rowWidth, count) = ValidateRows("index-add", destination, indices, source);
        DispatchFloat("index-add", destination, () => IndexAddRun<float>(destination, indices, source, rowWidth, count), () => IndexAddRun<double>(destination, indices, source, rowWidth, count));
    }

    private void IndexAddRun<T>(Tensor destination, Tensor indices, Tensor source, long rowWidth, long count) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* target = Pointer<T>(destination), from = Pointer<T>(source);
        long rows = destination.Dim(0);
        // Split by column blocks so each thread walks every index in order over its own columns: race-free and deterministic.
        CpuParallel.For(rowWidth, Threads, 256, (start, end) =>
        {
            int width = (int)(end - start);
            for (long i = 0; i < count; i++)
            {
                long row = ReadIndex(indices, i, rows, "index-add");
                var accumulator = new Span<T>(target + row * rowWidth + start, width);
                TensorPrimitives.Add(accumulator, new ReadOnlySpan<T>(from + i * rowWidth + start, width), accumulator);
            }
        });
    }

    /// <summary>Checks the (table, indices, rows) triple of a row operation and returns (row width, index count).</summary>
    private static (long RowWidth, long Count) ValidateRows(string operation, Tensor table, Tensor indices, Tensor rows)
    {
        Check.Compatible(operation, table, rows);
        Check.SameDevice(operation, table, indices);
        Check.Index(operation, indices);
        RequireContiguous(operation, table, "table");
        RequireContiguous(operation, rows, "rows");
        RequireContiguous(operation, indices, "indices");
        if (table.Rank < 1 || rows.Rank != table.Rank || indices.Rank != 1 || rows.Dim(0) != indices.Dim(0) || !rows.Shape[1..].SequenceEqual(table.Shape[1..]))
        {
            throw new ArgumentException($"{operation}: table {table.Describe()}, indices {indices.Describe()} and rows {rows.Describe()} do not fit (rows must be [indices, table.shape[1:]])");
        }
        return (table.ElementCount / Math.Max(1, table.Dim(0)), indices.ElementCount);
    }

    private static long ReadIndex(Tensor indices, long position, long limit, string operation)
    {
        long value = indices.DType == DType.Int32 ? Pointer<int>(indices)[position] : Pointer<long>(indices)[position];
        if ((ulong)value >= (ulong)limit)
        {
            throw new ArgumentOutOfRangeException(nameof(indices), $"{operation}: index {value} at position {position} is outside [0, {limit})");
        }
        return value;
    }

    /// <summary>
    /// Throws for the first index outside [0, limit), before any kernel reads through the indices: a check inside a threaded
    /// loop would surface as an AggregateException, and one inside a scatter would leave the destination half written.
    /// </summary>
    internal static void RequireIndicesInRange(string operation, Tensor indices, long limit)
    {
        if (indices.ElementCount == 0)
        {
            return;
        }
        bool inRange = indices.DType == DType.Int32
            ? TensorPrimitives.Min<int>(Span<int>(indices)) >= 0 && TensorPrimitives.Max<int>(Span<int>(indices)) < limit
            : TensorPrimitives.Min<long>(Span<long>(indices)) >= 0 && TensorPrimitives.Max<long>(Span<long>(indices)) < limit;
        for (long position = 0; !inRange && position < indices.ElementCount; position++)
        {
            ReadIndex(indices, position, limit, operation);
        }
    }

    /// <summary>An index already checked by <see cref="RequireIndicesInRange"/>.</summary>
    private static long IndexAt(Tensor indices, long position) =>
        indices.DType == DType.Int32 ? Pointer<int>(indices)[position] : Pointer<long>(indices)[position];

    public void GatherFlat(Tensor source, Tensor indices, Tensor result)
    {
        ValidateFlat("gather", source, indices, result);
        DispatchFloat("gather", source, () => MoveFlat<float>(source, indices, result, scatter: false), () => MoveFlat<double>(source, indices, result, scatter: false));
    }

    /// <summary>packed[i] = dense.flat[indices[i]] (gather), or the reverse (scatter); threaded over the indices.</summary>
    private void MoveFlat<T>(Tensor dense, Tensor indices, Tensor packed, bool scatter) where T : unmanaged
    {
        T* denseValues = Pointer<T>(dense), packedValues = Pointer<T>(packed);
        CpuParallel.For(indices.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                if (scatter)
                {
                    denseValues[IndexAt(indices, i)] = packedValues[i];
                }
                else
                {
                    packedValues[i] = denseValues[IndexAt(indices, i)];
                }
            }
        });
    }

    public void ScatterAddFlat(Tensor destination, Tensor indices, Tensor values)
    {
        ValidateFlat("scatter-add", destination, indices, values);
        DispatchFloat("scatter-add", destination, () => ScatterAddRun<float>(destination, indices, values), () => ScatterAddRun<double>(destination, indices, values));
    }

    private static void ScatterAddRun<T>(Tensor destination, Tensor indices, Tensor values) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* target = Pointer<T>(destination), from = Pointer<T>(values);
        for (long i = 0; i < indices.ElementCount; i++)
        {
            target[IndexAt(indices, i)] += from[i];
        }
    }

    public void ScatterFlat(Tensor destination, Tensor indices, Tensor values)
    {
        ValidateFlat("scatter", destination, indices, values);
        DispatchFloat("scatter", destination, () => MoveFlat<float>(destination, indices, values, scatter: true), () => MoveFlat<double>(destination, indices, values, scatter: true));
    }

    private static void ValidateFlat(string operation, Tensor dense, Tensor indices, Tensor values)
    {
        Check.Compatible(operation, dense, values);
        Check.SameDevice(operation, dense, indices);
        Check.Index(operation, indices);
        RequireContiguous(operation, dense, "dense tensor");
        RequireContiguous(operation, indices, "indices");
        RequireContiguous(operation, values, "values");
        if (indices.ElementCount != values.ElementCount)
        {
            throw new ArgumentException($"{operation}: {indices.Describe()} and {values.Describe()} must have the same element count");
        }
        RequireIndicesInRange(operation, indices, dense.ElementCount);
    }
}
