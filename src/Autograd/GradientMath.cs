namespace Engine.Autograd;

/// <summary>Tensor helpers shared by backward rules.</summary>
internal static class GradientMath
{
    /// <summary>Sums a broadcast gradient back down to the shape of the operand that was broadcast.</summary>
    public static Tensor SumToShape(Tensor gradient, ReadOnlySpan<int> shape)
    {
        if (gradient.Shape.SequenceEqual(shape))
        {
            return gradient.Share();
        }
        var keptShape = new int[gradient.Rank];
        int lead = gradient.Rank - shape.Length;
        for (int axis = 0; axis < gradient.Rank; axis++)
        {
            keptShape[axis] = axis < lead ? 1 : shape[axis - lead];
        }
        using var reduced = Tensor.Empty(keptShape, gradient.DType, gradient.Device);
        gradient.Backend.Sum(gradient, reduced);
        return reduced.Reshape(shape.ToArray());
    }

    /// <summary>A packed copy of <paramref name="gradient"/> broadcast to <paramref name="shape"/>.</summary>
    public static Tensor ExpandTo(Tensor gradient, ReadOnlySpan<int> shape)
    {
        using var view = gradient.Expand(shape.ToArray());
        return view.Clone();
    }

    public static Tensor ZerosLike(Tensor tensor) => Tensor.Zeros(tensor.Shape, tensor.DType, tensor.Device);

    public static Tensor EmptyLike(Tensor tensor) => Tensor.Empty(tensor.Shape, tensor.DType, tensor.Device);
}
