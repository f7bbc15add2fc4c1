namespace Engine.Autograd.Functions;

/// <summary>Rotary embedding on [batch, heads, tokens, headDim]; backward rotates the gradient by the negative angle.</summary>
internal sealed class RopeFunction(double theta) : Function
{
    private Tensor? positions;

    public override string Name => "Rope";

    public static Variable Apply(Variable x, Tensor positions, double theta)
    {
        using var packed = x.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        result.Backend.Rope(packed, positions, theta, inverse: false, result);
        var function = new RopeFunction(theta);
        function.positions = function.Save(positions);
        return function.Finish(result, x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var inputGrad = GradientMath.EmptyLike(gradient);
        inputGrad.Backend.Rope(gradient, positions!, theta, inverse: true, inputGrad);
        return [inputGrad];
    }
}
