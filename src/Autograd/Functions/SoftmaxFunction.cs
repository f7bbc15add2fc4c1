namespace Engine.Autograd.Functions;

/// <summary>Softmax or log-softmax over the last axis; backward uses only the saved output.</summary>
internal sealed class SoftmaxFunction(bool log) : Function
{
    private Tensor? output;

    public override string Name => log ? "LogSoftmax" : "Softmax";

    public static Variable Apply(Variable x, bool log)
    {
        using var packed = x.Data.Contiguous();
        var result = GradientMath.EmptyLike(packed);
        result.Backend.Softmax(packed, result, log);
        var function = new SoftmaxFunction(log);
        function.output = function.Save(result);
        return function.Finish(result, x);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var inputGrad = GradientMath.EmptyLike(gradient);
        inputGrad.Backend.SoftmaxBackward(output!, gradient, inputGrad, log);
        return [inputGrad];
    }
}
