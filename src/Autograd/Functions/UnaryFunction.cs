namespace Engine.Autograd.Functions;

/// <summary>Elementwise functions (exp, log, sqrt, rsqrt, square, relu, sigmoid, silu, gelu, neg); the derivative lives beside the forward in the backend's operator struct.</summary>
internal sealed class UnaryFunction(UnaryOp op) : Function
{
    private Tensor? input, output;

    public override string Name => op.ToString();

    public static Variable Apply(UnaryOp op, Variable x)
    {
        using var packed = x.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        result.Backend.Unary(op, packed, result);
        var function = new UnaryFunction(op);
        function.input = function.Save(packed);
        function.output = function.Save(result);
        return function.Finish(result, x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var inputGrad = GradientMath.EmptyLike(gradient);
        inputGrad.Backend.UnaryBackward(op, input!, output!, gradient, inputGrad);
        return [inputGrad];
    }
}
