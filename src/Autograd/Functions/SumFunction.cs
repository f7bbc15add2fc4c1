namespace Engine.Autograd.Functions;

/// <summary>Sum over axes (all axes when none are given). Backward broadcasts the gradient back.</summary>
internal sealed class SumFunction(int[] inputShape, int[] keptShape) : Function
{
    public override string Name => "Sum";

    public static Variable Apply(Variable x, int[]? axes, bool keepDims)
    {
        var shape = x.Data.ShapeArray();
        var reduceAxes = axes is null || axes.Length == 0 ? Enumerable.Range(0, shape.Length).ToArray() : axes.Select(x.Data.NormalizeAxis).ToArray();
        var keptShape = (int[])shape.Clone();
        foreach (int axis in reduceAxes)
        {
            keptShape[axis] = 1;
        }
        using var reduced = Tensor.Empty(keptShape, x.DType, x.Device);
        reduced.Backend.Sum(x.Data, reduced);
        var outputShape = keepDims ? keptShape : keptShape.Where((_, axis) => !reduceAxes.Contains(axis)).ToArray();
        return new SumFunction(shape, keptShape).Finish(reduced.Reshape(outputShape), x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var kept = outputGrad.Reshape(keptShape);
        return [GradientMath.ExpandTo(kept, inputShape)];
    }
}
