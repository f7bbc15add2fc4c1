using System.Numerics;

namespace Engine.Cpu;

/// <summary>
/// SM3 on SpIEL-MA's active entries of one [out, in] matrix, with one accumulator per row and one per column instead of
/// one per entry. Every ν is computed from the accumulators as they were before the step (threaded over the entries,
/// which also update their values), then the accumulators take the maxima serially: max is order-independent, so the
/// result does not depend on the order of the entries or on the thread count.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void Sm3SparseStep(Tensor values, Tensor gradient, Tensor indices, int inFeatures, Tensor rowAccumulator, Tensor columnAccumulator, double learningRate, double epsilon)
    {
        const string name = "sparse sm3";
        Check.Compatible(name, values, gradient);
        Check.Compatible(name, values, rowAccumulator);
        Check.Compatible(name, values, columnAccumulator);
        Check.SameDevice(name, values, indices);
        if (values.Rank != 1 || !gradient.Shape.SequenceEqual(values.Shape) || !indices.Shape.SequenceEqual(values.Shape) || indices.DType != DType.Int32)
        {
            throw new ArgumentException($"{name}: values {values.Describe()}, gradient {gradient.Describe()} and int32 indices {indices.Describe()} must all be [k]");
        }
        if (inFeatures < 1 || rowAccumulator.Rank != 1 || columnAccumulator.Rank != 1 || columnAccumulator.Dim(0) != inFeatures)
        {
            throw new ArgumentException($"{name}: row accumulator {rowAccumulator.Describe()} must be [out] and column accumulator {columnAccumulator.Describe()} [in] with in = {inFeatures}");
        }
        foreach (var (tensor, role) in new[] { (values, "values"), (gradient, "gradient"), (indices, "indices"), (rowAccumulator, "row accumulator"), (columnAccumulator, "column accumulator") })
        {
            RequireContiguous(name, tensor, role);
        }
        RequireIndicesInRange(name, indices, (long)rowAccumulator.Dim(0) * inFeatures);
        DispatchFloat(name, values,
            () => Sm3SparseRun<float>(values, gradient, indices, inFeatures, rowAccumulator, columnAccumulator, learningRate, epsilon),
            () => Sm3SparseRun<double>(values, gradient, indices, inFeatures, rowAccumulator, columnAccumulator, learningRate, epsilon));
    }

    private void Sm3SparseRun<T>(Tensor values, Tensor gradient, Tensor indices, int inFeatures, Tensor rowAccumulator, Tensor columnAccumulator, double learningRate, double epsilon)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* parameters = Pointer<T>(values), gradients = Pointer<T>(gradient), rows = Pointer<T>(rowAccumulator), columns = Pointer<T>(columnAccumulator);
        int* flatIndices = Pointer<int>(indices);
        using var estimateBuffer = Scratch(values.DType, values.Dim(0));
        T* estimates = Pointer<T>(estimateBuffer);
        T rate = FromDouble<T>(learningRate), offset = FromDouble<T>(epsilon);
        CpuParallel.For(values.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long entry = start; entry < end; entry++)
            {
                int row = flatIndices[entry] / inFeatures, column = flatIndices[entry] - row * inFeatures;
                T gradientValue = gradients[entry];
                T estimate = T.Min(rows[row], columns[column]) + gradientValue * gradientValue;
                estimates[entry] = estimate;
                parameters[entry] -= rate * gradientValue / T.Sqrt(estimate + offset);
            }
        });
        for (long entry = 0; entry < values.ElementCount; entry++)
        {
            int row = flatIndices[entry] / inFeatures, column = flatIndices[entry] - row * inFeatures;
            rows[row] = T.Max(rows[row], estimates[entry]);
            columns[column] = T.Max(columns[column], estimates[entry]);
        }
    }
}
