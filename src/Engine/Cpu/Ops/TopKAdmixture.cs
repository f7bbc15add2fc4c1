using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>
/// VB-LoRA's top-k softmax admixture (each logits row mixes its k best bank vectors), forward and backward. The forward and
/// the logits gradient are threaded over rows; the bank gradient, a scatter-add, over column blocks so it is race-free and deterministic.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void TopKAdmixture(Tensor logits, Tensor bank, int topK, Tensor result, Tensor selectedIndices, Tensor selectedWeights)
    {
        const string name = "top-k admixture";
        Check.TopKAdmixture(name, logits, bank, topK);
        RequireContiguous(name, logits, "logits");
        var (rowCount, selectedCount) = ValidateSelection(name, bank, selectedIndices, selectedWeights);
        RequireRows(name, logits, bank, rowCount, bank.Dim(0), "logits");
        if (selectedCount != topK)
        {
            throw new ArgumentException($"{name}: the selection {selectedIndices.Describe()} must have k = {topK} columns");
        }
        var outputShape = logits.ShapeArray();
        outputShape[^1] = bank.Dim(1);
        Check.Compatible(name, bank, result);
        Check.Shape(name, result, outputShape, "result");
        RequireContiguous(name, result, "result");
        DispatchFloat(name, bank,
            () => TopKAdmixtureRun<float>(logits, bank, result, selectedIndices, selectedWeights),
            () => TopKAdmixtureRun<double>(logits, bank, result, selectedIndices, selectedWeights));
    }

    private void TopKAdmixtureRun<T>(Tensor logits, Tensor bank, Tensor result, Tensor selectedIndices, Tensor selectedWeights)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int vectorCount = bank.Dim(0), vectorLength = bank.Dim(1), topK = selectedIndices.Dim(1);
        long rowCount = selectedIndices.Dim(0);
        T* logitRows = Pointer<T>(logits), vectors = Pointer<T>(bank), outputs = Pointer<T>(result), weights = Pointer<T>(selectedWeights);
        int* indices = Pointer<int>(selectedIndices);
        // The first row with no finite logit, reported after the loop: a throw inside a worker would surface as an AggregateException.
        long firstRowWithoutFiniteLogit = long.MaxValue;
        var gate = new object();
        CpuParallel.For(rowCount, Threads, Math.Max(1, 16384 / (vectorCount + topK * vectorLength)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                var rowIndices = new Span<int>(indices + row * topK, topK);
                var rowWeights = new Span<T>(weights + row * topK, topK);
                SelectTopK(new ReadOnlySpan<T>(logitRows + row * vectorCount, vectorCount), rowIndices, rowWeights);
                if (T.IsNegativeInfinity(rowWeights[0]))
                {
                    lock (gate)
                    {
                        firstRowWithoutFiniteLogit = Math.Min(firstRowWithoutFiniteLogit, row);
                    }
                    continue;
                }
                SoftmaxOfDescending(rowWeights);
                var output = new Span<T>(outputs + row * vectorLength, vectorLength);
                TensorPrimitives.Multiply(new ReadOnlySpan<T>(vectors + (long)rowIndices[0] * vectorLength, vectorLength), rowWeights[0], output);
                for (int slot = 1; slot < topK; slot++)
                {
                    var vector = new ReadOnlySpan<T>(vectors + (long)rowIndices[slot] * vectorLength, vectorLength);
                    TensorPrimitives.MultiplyAdd(vector, rowWeights[slot], output, output);
                }
            }
        });
        if (firstRowWithoutFiniteLogit != long.MaxValue)
        {
            throw new ArgumentException($"top-k admixture: row {firstRowWithoutFiniteLogit} of logits {logits.Describe()} has no finite value; every row needs one among its top k");
        }
    }

    /// <summary>
    /// The k largest values of a row and their indices, in descending order, in one pass: each value is inserted into k
    /// slots kept sorted. Indices are scanned upward and a value moves ahead only of strictly smaller ones, which gives the
    /// tie rule: among equal values the lower index is selected and comes first.
    /// </summary>
    private static void SelectTopK<T>(ReadOnlySpan<T> row, Span<int> indices, Span<T> values) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int topK = indices.Length;
        for (int index = 0; index < topK; index++)
        {
            InsertIntoSlots(row[index], index, index, indices, values);
        }
        // Once the slots are full, an entry enters only if it beats the k-th value. Few do, so whole vectors holding none
        // are skipped with one comparison; a vector holding one is walked in order, as the scalar tail is.
        T threshold = values[topK - 1];
        int position = topK;
        for (; position <= row.Length - Vector<T>.Count; position += Vector<T>.Count)
        {
            if (Vector.GreaterThanAny(new Vector<T>(row[position..]), new Vector<T>(threshold)))
            {
                threshold = InsertBeyondThreshold(row, position, position + Vector<T>.Count, threshold, indices, values);
            }
        }
        InsertBeyondThreshold(row, position, row.Length, threshold, indices, values);
    }

    /// <summary>Inserts each entry of row[start..end) above the k-th value (dropping the smallest); returns the new k-th value.</summary>
    private static T InsertBeyondThreshold<T>(ReadOnlySpan<T> row, int start, int end, T threshold, Span<int> indices, Span<T> values)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        for (int index = start; index < end; index++)
        {
            if (row[index] > threshold)
            {
                InsertIntoSlots(row[index], index, indices.Length - 1, indices, values);
                threshold = values[^1];
            }
        }
        return threshold;
    }

    /// <summary>Writes (value, index) at <paramref name="slot"/> and bubbles it ahead of every strictly smaller value.</summary>
    private static void InsertIntoSlots<T>(T value, int index, int slot, Span<int> indices, Span<T> values) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        while (slot > 0 && value > values[slot - 1])
        {
            values[slot] = values[slot - 1];
            indices[slot] = indices[slot - 1];
            slot--;
        }
        values[slot] = value;
        indices[slot] = index;
    }

    /// <summary>Softmax in place over a few values sorted in descending order (so the first is the max, and finite).</summary>
    private static void SoftmaxOfDescending<T>(Span<T> values) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T max = values[0], sum = T.Zero;
        for (int slot = 0; slot < values.Length; slot++)
        {
            // exp(−inf − max) = 0: a selected −inf logit gets weight 0.
            values[slot] = T.Exp(values[slot] - max);
            sum += values[slot];
        }
        for (int slot = 0; slot < values.Length; slot++)
        {
            values[slot] /= sum;
        }
    }

    public void TopKAdmixtureBackward(Tensor bank, Tensor selectedIndices, Tensor selectedWeights, Tensor outputGrad, Tensor? logitsGrad, Tensor? bankGrad)
    {
        const string name = "top-k admixture backward";
        var (rowCount, _) = ValidateSelection(name, bank, selectedIndices, selectedWeights);
        RequireRows(name, outputGrad, bank, rowCount, bank.Dim(1), "output gradient");
        if (logitsGrad is not null)
        {
            RequireRows(name, logitsGrad, bank, rowCount, bank.Dim(0), "logits gradient");
        }
        if (bankGrad is not null)
        {
            Check.Compatible(name, bank, bankGrad);
            Check.SameShape(name, bank, bankGrad);
            RequireContiguous(name, bankGrad, "bank gradient");
        }
        // The kernels index the bank and the logits gradient with these: check them once, serially, before any writes.
        foreach (int index in Span<int>(selectedIndices))
        {
            if ((uint)index >= (uint)bank.Dim(0))
            {
                throw new ArgumentOutOfRangeException(nameof(selectedIndices), $"{name}: selected index {index} is outside [0, {bank.Dim(0)}) for bank {bank.Describe()}");
            }
        }
        DispatchFloat(name, bank,
            () => TopKAdmixtureBackwardRun<float>(bank, selectedIndices, selectedWeights, outputGrad, logitsGrad, bankGrad),
            () => TopKAdmixtureBackwardRun<double>(bank, selectedIndices, selectedWeights, outputGrad, logitsGrad, bankGrad));
    }

    private void TopKAdmixtureBackwardRun<T>(Tensor bank, Tensor selectedIndices, Tensor selectedWeights, Tensor outputGrad, Tensor? logitsGrad, Tensor? bankGrad)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int vectorCount = bank.Dim(0), vectorLength = bank.Dim(1), topK = selectedIndices.Dim(1);
        long rowCount = selectedIndices.Dim(0);
        T* vectors = Pointer<T>(bank), gradients = Pointer<T>(outputGrad), weights = Pointer<T>(selectedWeights);
        int* indices = Pointer<int>(selectedIndices);
        if (logitsGrad is not null)
        {
            T* logitGradients = Pointer<T>(logitsGrad);
            CpuParallel.For(rowCount, Threads, Math.Max(1, 16384 / (vectorCount + topK * vectorLength)), (start, end) =>
            {
                for (long row = start; row < end; row++)
                {
                    var gradient = new ReadOnlySpan<T>(gradients + row * vectorLength, vectorLength);
                    var rowGrad = new Span<T>(logitGradients + row * vectorCount, vectorCount);
                    rowGrad.Clear();
                    // c_j = g · bank[idx_j], parked at the (distinct) selected entries; d logit_j = w_j (c_j − Σ_l w_l c_l).
                    T weightedSum = T.Zero;
                    for (int slot = 0; slot < topK; slot++)
                    {
                        int index = indices[row * topK + slot];
                        T projection = TensorPrimitives.Dot(gradient, new ReadOnlySpan<T>(vectors + (long)index * vectorLength, vectorLength));
                        rowGrad[index] = projection;
                        weightedSum += weights[row * topK + slot] * projection;
                    }
                    for (int slot = 0; slot < topK; slot++)
                    {
                        int index = indices[row * topK + slot];
                        rowGrad[index] = weights[row * topK + slot] * (rowGrad[index] - weightedSum);
                    }
                }
            });
        }
        if (bankGrad is not null)
        {
            T* vectorGradients = Pointer<T>(bankGrad);
            long selections = rowCount * topK;
            // Each worker owns a block of columns and walks every selection in row order: bank rows picked by many rows
            // accumulate without races, in the same order on every run. Blocks stay at least a cache line of floats wide.
            CpuParallel.For(vectorLength, Threads, Math.Max(16, 16384 / Math.Max(1, selections)), (start, end) =>
            {
                int width = (int)(end - start);
                for (long selection = 0; selection < selections; selection++)
                {
                    long row = selection / topK;
                    var gradient = new ReadOnlySpan<T>(gradients + row * vectorLength + start, width);
                    var accumulator = new Span<T>(vectorGradients + (long)indices[selection] * vectorLength + start, width);
                    TensorPrimitives.MultiplyAdd(gradient, weights[selection], accumulator, accumulator);
                }
            });
        }
    }

    /// <summary>Checks a saved selection (int32 indices and weights, both [S, k]) against the bank [N, L]; returns (S, k).</summary>
    private static (long RowCount, int TopK) ValidateSelection(string operation, Tensor bank, Tensor selectedIndices, Tensor selectedWeights)
    {
        Check.Rank(operation, bank, 2);
        RequireContiguous(operation, bank, "bank");
        Check.SameDevice(operation, bank, selectedIndices);
        Check.Compatible(operation, bank, selectedWeights);
        if (selectedIndices.DType != DType.Int32 || selectedIndices.Rank != 2 || !selectedIndices.Shape.SequenceEqual(selectedWeights.Shape))
        {
            throw new ArgumentException($"{operation}: selected indices {selectedIndices.Describe()} must be int32 [S, k] with the shape of the selected weights {selectedWeights.Describe()}");
        }
        RequireContiguous(operation, selectedIndices, "selected indices");
        RequireContiguous(operation, selectedWeights, "selected weights");
        return (selectedIndices.Dim(0), selectedIndices.Dim(1));
    }

    /// <summary>Requires a contiguous tensor [..., width] of the bank's dtype with <paramref name="rowCount"/> rows.</summary>
    private static void RequireRows(string operation, Tensor tensor, Tensor bank, long rowCount, int width, string role)
    {
        Check.Compatible(operation, bank, tensor);
        RequireContiguous(operation, tensor, role);
        if (tensor.Rank < 1 || tensor.Dim(-1) != width || tensor.ElementCount != rowCount * width)
        {
            throw new ArgumentException($"{operation}: {role} {tensor.Describe()} must be [..., {width}] with {rowCount} rows (one per selection row) for bank {bank.Describe()}");
        }
    }
}
