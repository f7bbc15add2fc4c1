namespace Engine.Autograd.Functions;

/// <summary>Inverted dropout; the mask is a function of (seed, element index), regenerated in backward rather than stored.</summary>
internal sealed class DropoutFunction(double probability, ulong seed) : Function
{
    public override string Name => "Dropout";

    public static Variable Apply(Variable x, double probability, ulong seed)
    {
        using var packed = x.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        result.Backend.Dropout(packed, probability, seed, result);
        return new DropoutFunction(probability, seed).Finish(result, x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var inputGrad = GradientMath.EmptyLike(gradient);
        inputGrad.Backend.Dropout(gradient, probability, seed, inputGrad);
        return [inputGrad];
    }
}
