namespace Engine.Autograd.Functions;

/// <summary>Reshape: a view when the input is packed; the gradient is reshaped back.</summary>
internal sealed class ReshapeFunction(int[] inputShape) : Function
{
    public override string Name => "Reshape";

    public static Variable Apply(Variable x, int[] shape) => new ReshapeFunction(x.Data.ShapeArray()).Finish(x.Data.Reshape(shape), x);

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad) => [outputGrad.Reshape(inputShape)];
}

/// <summary>Axis permutation (transpose is the two-axis case): a view; the gradient is permuted back.</summary>
internal sealed class PermuteFunction(int[] inverse) : Function
{
    public override string Name => "Permute";

    public static Variable Apply(Variable x, int[] axes)
    {
        var normalized = axes.Select(x.Data.NormalizeAxis).ToArray();
        var inverse = new int[normalized.Length];
        for (int i = 0; i < normalized.Length; i++)
        {
            inverse[normalized[i]] = i;
        }
        return new PermuteFunction(inverse).Finish(x.Data.Permute(normalized), x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad) => [outputGrad.Permute(inverse)];
}

/// <summary>Slice [start, start + length) of one axis: a view; the gradient is zero outside the slice.</summary>
internal sealed class NarrowFunction(int[] inputShape, int axis, int start) : Function
{
    public override string Name => "Narrow";

    public static Variable Apply(Variable x, int axis, int start, int length)
    {
        int normalized = x.Data.NormalizeAxis(axis);
        return new NarrowFunction(x.Data.ShapeArray(), normalized, start).Finish(x.Data.Narrow(normalized, start, length), x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var inputGrad = Tensor.Zeros(inputShape, outputGrad.DType, outputGrad.Device);
        using var window = inputGrad.Narrow(axis, start, outputGrad.Dim(axis));
        window.CopyFrom(outputGrad);
        return [inputGrad];
    }
}

/// <summary>Concatenation along one axis; each input's gradient is its slice of the output gradient.</summary>
internal sealed class ConcatFunction(int axis, int[] sizes) : Function
{
    public override string Name => "Concat";

    public static Variable Apply(IReadOnlyList<Variable> parts, int axis)
    {
        if (parts.Count == 0)
        {
            throw new ArgumentException("concat: needs at least one tensor");
        }
        var first = parts[0].Data;
        int normalized = first.NormalizeAxis(axis);
        foreach (var part in parts)
        {
            Check.Compatible("concat", first, part.Data);
            bool fits = part.Rank == first.Rank;
            for (int i = 0; fits && i < first.Rank; i++)
            {
                fits = i == normalized || part.Dim(i) == first.Dim(i);
            }
            if (!fits)
            {
                throw new ArgumentException($"concat along axis {normalized}: {part.Data.Describe()} does not match {first.Describe()} on the other axes");
            }
        }
        var sizes = parts.Select(part => part.Dim(normalized)).ToArray();
        var shape = first.ShapeArray();
        shape[normalized] = sizes.Sum();
        var result = Tensor.Empty(shape, first.DType, first.Device);
        int offset = 0;
        foreach (var part in parts)
        {
            using var window = result.Narrow(normalized, offset, part.Dim(normalized));
            window.CopyFrom(part.Data);
            offset += part.Dim(normalized);
        }
        return new ConcatFunction(normalized, sizes).Finish(result, [.. parts]);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var grads = new Tensor?[sizes.Length];
        int offset = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            if (needsGrad[i])
            {
                grads[i] = outputGrad.Narrow(axis, offset, sizes[i]);
            }
            offset += sizes[i];
        }
        return grads;
    }
}
