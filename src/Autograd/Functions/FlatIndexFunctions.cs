namespace Engine.Autograd.Functions;

/// <summary>values[i] = x.flat[indices[i]]; backward scatter-adds into a zero gradient of x's shape.</summary>
internal sealed class GatherFlatFunction : Function
{
    private Tensor? indices;
    private int[] sourceShape = [];

    public override string Name => "GatherFlat";

    public static Variable Apply(Variable source, Tensor indices)
    {
        using var packed = source.Data.Contiguous();
        var result = Tensor.Empty(indices.Shape, source.DType, source.Device);
        result.Backend.GatherFlat(packed, indices, result);
        var function = new GatherFlatFunction { sourceShape = packed.ShapeArray() };
        function.indices = function.Save(indices);
        return function.Finish(result, source);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var sourceGrad = Tensor.Zeros(sourceShape, outputGrad.DType, outputGrad.Device);
        using var gradient = outputGrad.Contiguous();
        sourceGrad.Backend.ScatterAddFlat(sourceGrad, indices!, gradient);
        return [sourceGrad];
    }
}

/// <summary>
/// result = dense with values scatter-added at flat indices (SpIEL's W + Δ). Backward: the dense gradient passes through,
/// and each value's gradient is the output gradient gathered at its index (no dense ΔW is formed).
/// </summary>
internal sealed class ScatterAddFlatFunction : Function
{
    private Tensor? indices;

    public override string Name => "ScatterAddFlat";

    public static Variable Apply(Variable dense, Tensor indices, Variable values)
    {
        if (!values.Shape.SequenceEqual(indices.Shape))
        {
            throw new ArgumentException($"scatter-add: values {values.Data.Describe()} and indices {indices.Describe()} must have the same shape");
        }
        var result = dense.Data.Clone();
        using var packedValues = values.Data.Contiguous();
        result.Backend.ScatterAddFlat(result, indices, packedValues);
        var function = new ScatterAddFlatFunction();
        function.indices = function.Save(indices);
        return function.Finish(result, dense, values);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        Tensor? valuesGrad = null;
        if (needsGrad[1])
        {
            valuesGrad = Tensor.Empty(indices!.Shape, outputGrad.DType, outputGrad.Device);
            valuesGrad.Backend.GatherFlat(gradient, indices, valuesGrad);
        }
        return [needsGrad[0] ? gradient.Share() : null, valuesGrad];
    }
}
