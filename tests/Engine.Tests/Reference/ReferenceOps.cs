namespace Engine.Tests.Reference;

/// <summary>
/// Textbook float64 implementations over flat row-major arrays, written independently of the engine's kernels
/// (plain loops, no tiling, no vectorisation): the yardstick the conformance suite measures every backend against.
/// </summary>
public static class ReferenceOps
{
    public static long Count(int[] shape) => shape.Aggregate(1L, (product, size) => product * size);

    public static int[] Broadcast(int[] left, int[] right)
    {
        int rank = Math.Max(left.Length, right.Length);
        var result = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int l = i - (rank - left.Length) >= 0 ? left[i - (rank - left.Length)] : 1;
            int r = i - (rank - right.Length) >= 0 ? right[i - (rank - right.Length)] : 1;
            result[i] = Math.Max(l, r);
        }
        return result;
    }

    /// <summary>Flat index into an operand of <paramref name="shape"/> for the multi-index of element <paramref name="flat"/> of the broadcast result.</summary>
    private static long BroadcastIndex(long flat, int[] resultShape, int[] shape)
    {
        long index = 0, stride = 1;
        for (int axis = resultShape.Length - 1, own = shape.Length - 1; axis >= 0; axis--, own--)
        {
            long coordinate = flat % resultShape[axis];
            flat /= resultShape[axis];
            if (own >= 0)
            {
                index += (shape[own] == 1 ? 0 : coordinate) * stride;
                stride *= shape[own];
            }
        }
        return index;
    }

    public static double[] Binary(Func<double, double, double> op, double[] left, int[] leftShape, double[] right, int[] rightShape)
    {
        var shape = Broadcast(leftShape, rightShape);
        var result = new double[Count(shape)];
        for (long i = 0; i < result.Length; i++)
        {
            result[i] = op(left[BroadcastIndex(i, shape, leftShape)], right[BroadcastIndex(i, shape, rightShape)]);
        }
        return result;
    }

    public static double[] Map(double[] input, Func<double, double> function) => input.Select(function).ToArray();

    public static double Sigmoid(double x) => 1 / (1 + Math.Exp(-x));

    public static double Gelu(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>C[b] = A[b] (m×k) · B[b] (k×n) for a batch of row-major matrices.</summary>
    public static double[] MatMul(double[] left, double[] right, int batch, int m, int k, int n, bool rightShared = false)
    {
        var result = new double[batch * m * n];
        for (int b = 0; b < batch; b++)
        {
            for (int i = 0; i < m; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < k; p++)
                    {
                        sum += left[(b * m + i) * k + p] * right[(rightShared ? 0 : b * k * n) + p * n + j];
                    }
                    result[(b * m + i) * n + j] = sum;
                }
            }
        }
        return result;
    }

    public static double[] Transpose2D(double[] matrix, int rows, int columns)
    {
        var result = new double[matrix.Length];
        for (int i = 0; i < rows; i++)
        {
            for (int j = 0; j < columns; j++)
            {
                result[j * rows + i] = matrix[i * columns + j];
            }
        }
        return result;
    }

    /// <summary>Sum over the given axes; the result keeps the other axes in order.</summary>
    public static double[] Sum(double[] input, int[] shape, int[] axes)
    {
        var keptShape = shape.Select((size, axis) => axes.Contains(axis) ? 1 : size).ToArray();
        var result = new double[Count(keptShape)];
        for (long flat = 0; flat < input.Length; flat++)
        {
            long remainder = flat, target = 0, stride = 1;
            for (int axis = shape.Length - 1; axis >= 0; axis--)
            {
                long coordinate = remainder % shape[axis];
                remainder /= shape[axis];
                target += (axes.Contains(axis) ? 0 : coordinate) * stride;
                stride *= keptShape[axis];
            }
            result[target] += input[flat];
        }
        return result;
    }

    /// <summary>Applies <paramref name="rowFunction"/> to each row of the last axis.</summary>
    public static double[] Rows(double[] input, int width, Func<double[], double[]> rowFunction)
    {
        var result = new List<double>();
        for (int start = 0; start < input.Length; start += width)
        {
            result.AddRange(rowFunction(input[start..(start + width)]));
        }
        return [.. result];
    }

    public static double[] Softmax(double[] row)
    {
        double max = row.Max();
        var exps = row.Select(v => Math.Exp(v - max)).ToArray();
        double sum = exps.Sum();
        return exps.Select(v => v / sum).ToArray();
    }

    public static double[] LogSoftmax(double[] row)
    {
        double max = row.Max();
        double logSum = Math.Log(row.Sum(v => Math.Exp(v - max))) + max;
        return row.Select(v => v - logSum).ToArray();
    }

    public static double CrossEntropy(double[] logits, int vocabulary, int[] targets, int ignoreIndex)
    {
        double total = 0;
        int counted = 0;
        for (int row = 0; row < targets.Length; row++)
        {
            if (targets[row] == ignoreIndex)
            {
                continue;
            }
            var logProbabilities = LogSoftmax(logits[(row * vocabulary)..((row + 1) * vocabulary)]);
            total -= logProbabilities[targets[row]];
            counted++;
        }
        return total / counted;
    }

    public static double[] RmsNorm(double[] input, double[] weight, double epsilon) =>
        Rows(input, weight.Length, row =>
        {
            double meanSquare = row.Sum(v => v * v) / row.Length;
            double inverse = 1 / Math.Sqrt(meanSquare + epsilon);
            return row.Select((v, i) => v * inverse * weight[i]).ToArray();
        });

    /// <summary>Hugging Face Llama rotary embedding ("rotate half") on [batch, heads, tokens, headDim].</summary>
    public static double[] Rope(double[] input, int[] shape, int[] positions, double theta)
    {
        int tokens = shape[2], headDim = shape[3], half = headDim / 2;
        var result = new double[input.Length];
        for (long vector = 0; vector < input.Length / headDim; vector++)
        {
            int token = (int)(vector % tokens);
            long start = vector * headDim;
            for (int i = 0; i < half; i++)
            {
                double angle = positions[token] / Math.Pow(theta, 2.0 * i / headDim);
                double first = input[start + i], second = input[start + i + half];
                result[start + i] = first * Math.Cos(angle) - second * Math.Sin(angle);
                result[start + i + half] = second * Math.Cos(angle) + first * Math.Sin(angle);
            }
        }
        return result;
    }

    /// <summary>
    /// VB-LoRA's top-k admixture of logits [rows, vectorCount] over a bank [vectorCount, vectorLength]: each row is fully
    /// sorted by descending logit (ties: lower index first), the first k are softmaxed, and those bank rows are mixed.
    /// </summary>
    public static double[] TopKAdmixture(double[] logits, double[] bank, int vectorCount, int vectorLength, int topK)
    {
        int rows = logits.Length / vectorCount;
        var result = new double[rows * vectorLength];
        for (int row = 0; row < rows; row++)
        {
            var rowLogits = logits[(row * vectorCount)..((row + 1) * vectorCount)];
            var selected = Enumerable.Range(0, vectorCount).OrderByDescending(i => rowLogits[i]).ThenBy(i => i).Take(topK).ToArray();
            var weights = Softmax(selected.Select(i => rowLogits[i]).ToArray());
            for (int j = 0; j < topK; j++)
            {
                for (int column = 0; column < vectorLength; column++)
                {
                    result[row * vectorLength + column] += weights[j] * bank[selected[j] * vectorLength + column];
                }
            }
        }
        return result;
    }

    /// <summary>
    /// SpIEL's sparse-delta linear layer over input rows [tokens, in]: a dense copy of W [out, in] with each value added at
    /// its flat index (duplicates add up), then y[t, o] = Σ_i x[t, i] · (W + Δ)[o, i].
    /// </summary>
    public static double[] SparseDeltaLinear(double[] input, double[] weight, int[] indices, double[] values, int outFeatures, int inFeatures)
    {
        var merged = (double[])weight.Clone();
        for (int entry = 0; entry < indices.Length; entry++)
        {
            merged[indices[entry]] += values[entry];
        }
        int tokens = input.Length / inFeatures;
        var result = new double[tokens * outFeatures];
        for (int token = 0; token < tokens; token++)
        {
            for (int output = 0; output < outFeatures; output++)
            {
                double sum = 0;
                for (int feature = 0; feature < inFeatures; feature++)
                {
                    sum += input[token * inFeatures + feature] * merged[output * inFeatures + feature];
                }
                result[token * outFeatures + output] = sum;
            }
        }
        return result;
    }

    public static double[] IndexSelect(double[] table, int rowWidth, int[] indices) =>
        indices.SelectMany(index => table[(index * rowWidth)..((index + 1) * rowWidth)]).ToArray();

    public static double[] Permute(double[] input, int[] shape, int[] axes)
    {
        var outputShape = axes.Select(axis => shape[axis]).ToArray();
        var inputStrides = new long[shape.Length];
        long stride = 1;
        for (int axis = shape.Length - 1; axis >= 0; axis--)
        {
            inputStrides[axis] = stride;
            stride *= shape[axis];
        }
        var result = new double[input.Length];
        for (long flat = 0; flat < result.Length; flat++)
        {
            long remainder = flat, source = 0;
            for (int axis = outputShape.Length - 1; axis >= 0; axis--)
            {
                source += remainder % outputShape[axis] * inputStrides[axes[axis]];
                remainder /= outputShape[axis];
            }
            result[flat] = input[source];
        }
        return result;
    }

    public static double[] Narrow(double[] input, int[] shape, int axis, int start, int length)
    {
        long outer = Count(shape[..axis]), inner = Count(shape[(axis + 1)..]);
        var result = new List<double>();
        for (long o = 0; o < outer; o++)
        {
            for (int i = start; i < start + length; i++)
            {
                long offset = (o * shape[axis] + i) * inner;
                result.AddRange(input[(int)offset..(int)(offset + inner)]);
            }
        }
        return [.. result];
    }
}
