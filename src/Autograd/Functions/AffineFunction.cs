namespace Engine.Autograd.Functions;

/// <summary>alpha · x + beta with constant scalars (scaling, shifting, negation by a constant).</summary>
internal sealed class AffineFunction(double alpha) : Function
{
    public override string Name => "Affine";

    public static Variable Apply(Variable input, double alpha, double beta)
    {
        using var packed = input.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        result.Backend.Affine(packed, alpha, beta, result);
        return new AffineFunction(alpha).Finish(result, input);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var inputGrad = GradientMath.EmptyLike(outputGrad);
        inputGrad.Backend.Affine(outputGrad, alpha, 0, inputGrad);
        return [inputGrad];
    }
}
