namespace Engine.Autograd.Functions;

/// <summary>RMSNorm over the last axis with a learned scale; saves the input and one inverse RMS per row.</summary>
internal sealed class RmsNormFunction : Function
{
    private Tensor? input, weight, inverseRms;

    public override string Name => "RmsNorm";

    public static Variable Apply(Variable x, Variable w, double epsilon)
    {
        using var packed = x.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        using var rstd = Tensor.Empty(packed.Shape[..^1], x.DType, x.Device);
        result.Backend.RmsNorm(packed, w.Data, epsilon, result, rstd);
        var function = new RmsNormFunction();
        function.input = function.Save(packed);
        function.weight = function.Save(w.Data);
        function.inverseRms = function.Save(rstd);
        return function.Finish(result, x, w);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var inputGrad = GradientMath.EmptyLike(input!);
        var weightGrad = needsGrad[1] ? GradientMath.ZerosLike(weight!) : null;
        inputGrad.Backend.RmsNormBackward(input!, weight!, inverseRms!, gradient, inputGrad, weightGrad);
        return [needsGrad[0] ? inputGrad : null, weightGrad];
    }
}
