using Engine.IO;

namespace Engine.Peft.VbLora;

/// <summary>
/// peft's save_only_topk_weights layout: for logits [..., N], "_topk_indices" [..., k] and "_topk_weights" [..., k−1], the
/// softmax weights of the selected logits with the last (smallest) one dropped since it is 1 − Σ others. Loading rebuilds
/// logits as log(w) at the indices and −inf elsewhere, which selects and weights the same vectors.
/// </summary>
internal static class TopKFile
{
    /// <summary>
    /// Top-k indices (int32) and the first k−1 softmax weights of every row. Ties go to the lower index and the selected
    /// entries are ordered by descending logit, the same rule as the admixture operation.
    /// </summary>
    public static (Tensor Indices, Tensor Weights) Select(Tensor logits, int topK)
    {
        int vectorCount = logits.Dim(-1);
        using var onHost = logits.To(Device.Cpu);
        using var values = onHost.To(DType.Float64);
        var flat = values.ToArray<double>();
        int rowCount = flat.Length / vectorCount;
        var indices = new int[rowCount * topK];
        var weights = new float[rowCount * (topK - 1)];
        var order = new int[vectorCount];
        for (int row = 0; row < rowCount; row++)
        {
            var rowValues = new ArraySegment<double>(flat, row * vectorCount, vectorCount);
            for (int index = 0; index < vectorCount; index++)
            {
                order[index] = index;
            }
            var ranked = order.OrderByDescending(index => rowValues[index]).ThenBy(index => index).Take(topK).ToArray();
            double largest = rowValues[ranked[0]], total = 0;
            foreach (int index in ranked)
            {
                total += Math.Exp(rowValues[index] - largest);
            }
            for (int slot = 0; slot < topK; slot++)
            {
                indices[row * topK + slot] = ranked[slot];
                if (slot < topK - 1)
                {
                    weights[row * (topK - 1) + slot] = (float)(Math.Exp(rowValues[ranked[slot]] - largest) / total);
                }
            }
        }
        var leading = logits.ShapeArray()[..^1];
        return (Tensor.FromArray<int>(indices, [.. leading, topK], logits.Device), Tensor.FromArray<float>(weights, [.. leading, topK - 1], logits.Device));
    }

    /// <summary>Fills <paramref name="logits"/> [..., N] from the top-k tensors stored under <paramref name="key"/>, checking their shapes and indices.</summary>
    public static void Rebuild(SafetensorsFile file, string key, Tensor logits, int topK)
    {
        string indicesKey = key + "_topk_indices", weightsKey = key + "_topk_weights";
        if (!file.Contains(indicesKey) || !file.Contains(weightsKey))
        {
            throw new InvalidDataException($"{file.Path}: missing '{key}' (full logits, shape {logits.ShapeString}) and its top-k form ('{indicesKey}' and '{weightsKey}')");
        }
        int vectorCount = logits.Dim(-1);
        var leading = logits.ShapeArray()[..^1];
        foreach (var (name, width) in new[] { (indicesKey, topK), (weightsKey, topK - 1) })
        {
            int[] expected = [.. leading, width];
            if (!file.Entry(name).Shape.SequenceEqual(expected))
            {
                throw new InvalidDataException($"{file.Path}: '{name}' has shape {ShapeMath.Format(file.Entry(name).Shape)}, expected {ShapeMath.Format(expected)} " +
                    $"for logits {logits.ShapeString} with topk {topK}");
            }
        }
        using var indexTensor = file.Load(indicesKey, DType.Int32, Device.Cpu);
        using var weightTensor = file.Load(weightsKey, DType.Float64, Device.Cpu);
        var indices = indexTensor.ToArray<int>();
        var weights = weightTensor.ToArray<double>();
        int rowCount = indices.Length / topK;
        var rebuilt = new float[rowCount * vectorCount];
        Array.Fill(rebuilt, float.NegativeInfinity);
        // Stored weights are float32 softmax values: their sum may exceed 1 by rounding, not by more.
        const double sumTolerance = 1e-5;
        for (int row = 0; row < rowCount; row++)
        {
            double remaining = 1;
            for (int slot = 0; slot < topK; slot++)
            {
                int index = indices[row * topK + slot];
                if (index < 0 || index >= vectorCount)
                {
                    throw new InvalidDataException($"{file.Path}: '{indicesKey}' row {row} holds index {index}, outside the bank's 0..{vectorCount - 1}");
                }
                if (!float.IsNegativeInfinity(rebuilt[row * vectorCount + index]))
                {
                    throw new InvalidDataException($"{file.Path}: '{indicesKey}' row {row} selects vector {index} twice");
                }
                double weight = slot < topK - 1 ? weights[row * (topK - 1) + slot] : Math.Max(remaining, 0);
                if (!(weight >= 0 && weight <= 1) || remaining - weight < -sumTolerance)
                {
                    throw new InvalidDataException($"{file.Path}: '{weightsKey}' row {row} is not a set of softmax weights (weight {weight}, " +
                        $"the row's weights must lie in [0, 1] and sum to at most 1)");
                }
                remaining -= weight;
                rebuilt[row * vectorCount + index] = (float)Math.Log(weight);
            }
        }
        using var host = Tensor.FromArray<float>(rebuilt, logits.ShapeArray());
        using var placed = host.To(logits.Device);
        using var cast = placed.To(logits.DType);
        logits.CopyFrom(cast);
    }
}
