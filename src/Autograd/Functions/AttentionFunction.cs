namespace Engine.Autograd.Functions;

/// <summary>
/// Fused causal grouped-query attention. Saves q, k, v, the output and one log-sum-exp per query row; backward
/// recomputes the probabilities tile by tile, so no tokens × tokens matrix is ever kept.
/// </summary>
internal sealed class AttentionFunction(double scale) : Function
{
    private Tensor? query, key, value, output, logSumExp;

    public override string Name => "Attention";

    public static Variable Apply(Variable q, Variable k, Variable v, double scale)
    {
        using var packedQuery = q.Data.Contiguous();
        using var packedKey = k.Data.Contiguous();
        using var packedValue = v.Data.Contiguous();
        var result = GradientMath.EmptyLike(packedQuery);
        using var lse = Tensor.Empty(packedQuery.Shape[..^1], q.DType, q.Device);
        result.Backend.AttentionForward(packedQuery, packedKey, packedValue, scale, result, lse);
        var function = new AttentionFunction(scale);
        function.query = function.Save(packedQuery);
        function.key = function.Save(packedKey);
        function.value = function.Save(packedValue);
        function.output = function.Save(result);
        function.logSumExp = function.Save(lse);
        return function.Finish(result, q, k, v);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var queryGrad = GradientMath.EmptyLike(query!);
        var keyGrad = GradientMath.EmptyLike(key!);
        var valueGrad = GradientMath.EmptyLike(value!);
        queryGrad.Backend.AttentionBackward(query!, key!, value!, output!, logSumExp!, gradient, scale, queryGrad, keyGrad, valueGrad);
        return [queryGrad, keyGrad, valueGrad];
    }
}
