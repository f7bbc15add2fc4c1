namespace Engine.Cpu;

/// <summary>
/// Iteration plan for elementwise work over up to three same-shaped strided operands: size-1 axes are dropped and
/// adjacent axes merged where every operand allows it, leaving "rows" (all axes but the last) and an inner run.
/// </summary>
internal sealed class StridedLayout
{
    private readonly int[] outerShape;
    private readonly long[][] outerStrides;

    public StridedLayout(ReadOnlySpan<int> shape, params long[][] operandStrides)
    {
        var sizes = new List<int>();
        var strides = operandStrides.Select(_ => new List<long>()).ToArray();
        for (int axis = 0; axis < shape.Length; axis++)
        {
            if (shape[axis] == 1)
            {
                continue;
            }
            bool mergeable = sizes.Count > 0;
            for (int op = 0; op < operandStrides.Length && mergeable; op++)
            {
                mergeable = strides[op][^1] == operandStrides[op][axis] * shape[axis];
            }
            if (mergeable)
            {
                sizes[^1] *= shape[axis];
                for (int op = 0; op < operandStrides.Length; op++)
                {
                    strides[op][^1] = operandStrides[op][axis];
                }
            }
            else
            {
                sizes.Add(shape[axis]);
                for (int op = 0; op < operandStrides.Length; op++)
                {
                    strides[op].Add(operandStrides[op][axis]);
                }
            }
        }
        if (sizes.Count == 0)
        {
            sizes.Add(1);
            foreach (var list in strides)
            {
                list.Add(1);
            }
        }
        InnerLength = sizes[^1];
        InnerStrides = strides.Select(list => list[^1]).ToArray();
        outerShape = sizes.Take(sizes.Count - 1).ToArray();
        outerStrides = strides.Select(list => list.Take(list.Count - 1).ToArray()).ToArray();
        RowCount = ShapeMath.ElementCount(outerShape);
    }

    public long RowCount { get; }

    public int InnerLength { get; }

    public long[] InnerStrides { get; }

    /// <summary>Element offset of row <paramref name="row"/> for operand <paramref name="operand"/>, relative to its first element.</summary>
    public long RowOffset(int operand, long row)
    {
        long offset = 0;
        var strides = outerStrides[operand];
        for (int axis = outerShape.Length - 1; axis >= 0; axis--)
        {
            long index = row % outerShape[axis];
            row /= outerShape[axis];
            offset += index * strides[axis];
        }
        return offset;
    }
}
