namespace Engine.Autograd.Functions;

/// <summary>
/// y = x Wᵀ with W [out, in] as stored by Hugging Face: the transpose is read in place, and dW = gᵀ x comes out
/// directly in W's layout. The base of every adapter method (LoRA, SpIEL, ...).
/// </summary>
internal sealed class LinearFunction : Function
{
    private Tensor? input, weight;
    private int[] inputShape = [];

    public override string Name => "Linear";

    public static Variable Apply(Variable x, Variable w)
    {
        Check.Compatible("linear", x.Data, w.Data);
        if (w.Rank != 2 || x.Rank < 1 || x.Dim(-1) != w.Dim(1))
        {
            throw new ArgumentException($"linear: input {x.Data.Describe()} does not fit weight {w.Data.Describe()} (weight is [out, in]; input's last axis must be in)");
        }
        var function = new LinearFunction { inputShape = x.Data.ShapeArray() };
        using var rows = x.Data.Reshape(-1, w.Dim(1));
        using var weightTransposed = w.Data.Transpose(0, 1);
        var outputShape = x.Data.ShapeArray();
        outputShape[^1] = w.Dim(0);
        var result = Tensor.Empty(outputShape, x.DType, x.Device);
        using (var resultRows = result.Reshape(-1, w.Dim(0)))
        {
            result.Backend.MatMul(rows, weightTransposed, resultRows, 1, 0);
        }
        function.input = function.Save(rows);
        function.weight = function.Save(w.Data);
        return function.Finish(result, x, w);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Reshape(-1, weight!.Dim(0));
        var backend = gradient.Backend;
        Tensor? inputGrad = null, weightGrad = null;
        if (needsGrad[0])
        {
            // dx = g W
            inputGrad = Tensor.Empty([gradient.Dim(0), weight.Dim(1)], gradient.DType, gradient.Device);
            backend.MatMul(gradient, weight, inputGrad, 1, 0);
        }
        if (needsGrad[1])
        {
            // dW = gᵀ x
            using var gradientTransposed = gradient.Transpose(0, 1);
            weightGrad = GradientMath.EmptyLike(weight);
            backend.MatMul(gradientTransposed, input!, weightGrad, 1, 0);
        }
        return [inputGrad?.Reshape(inputShape), weightGrad];
    }
}
