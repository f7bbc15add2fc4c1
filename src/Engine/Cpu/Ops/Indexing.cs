using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>
/// Row gather/scatter-add (embedding lookup and its gradient, MEFT row gathers) and flat gather/scatter-add (SpIEL's sparse deltas).
/// Scatter-adds are deterministic: duplicates are summed in index order.
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

    public void GatherFlat(Tensor source, Tensor indices, Tensor result)
    {
        ValidateFlat("gather", source, indices, result);
        DispatchFloat("gather", source, () => GatherRun<float>(source, indices, result), () => GatherRun<double>(source, indices, result));
    }

    private void GatherRun<T>(Tensor source, Tensor indices, Tensor result) where T : unmanaged
    {
        T* from = Pointer<T>(source), to = Pointer<T>(result);
        long limit = source.ElementCount;
        CpuParallel.For(indices.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                to[i] = from[ReadIndex(indices, i, limit, "gather")];
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
        long limit = destination.ElementCount;
        for (long i = 0; i < indices.ElementCount; i++)
        {
            target[ReadIndex(indices, i, limit, "scatter-add")] += from[i];
        }
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
    }
}
