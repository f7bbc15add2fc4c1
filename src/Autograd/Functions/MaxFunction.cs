namespace Engine.Autograd.Functions;

/// <summary>Max over the last axis; the gradient goes to the first maximal element of each row.</summary>
internal sealed class MaxFunction : Function
{
    private Tensor? argmax;
    private int[] inputShape = [];

    public override string Name => "Max";

    public static Variable Apply(Variable x)
    {
        using var packed = x.Data.Contiguous();
        var outputShape = packed.Shape[..^1].ToArray();
        var result = Tensor.Empty(outputShape, x.DType, x.Device);
        using var indices = Tensor.Empty(outputShape, DType.Int32, x.Device);
        result.Backend.MaxLastAxis(packed, result, indices);
        var function = new MaxFunction { inputShape = packed.ShapeArray() };
        function.argmax = function.Save(indices);
        return function.Finish(result, x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var inputGrad = Tensor.Zeros(inputShape, outputGrad.DType, outputGrad.Device);
        using var gradient = outputGrad.Contiguous();
        inputGrad.Backend.MaxLastAxisBackward(argmax!, gradient, inputGrad);
        return [inputGrad];
    }
}
