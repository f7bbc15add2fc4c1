namespace Engine.Autograd.Functions;

/// <summary>
/// VB-LoRA's top-k softmax admixture: each row of logits [..., N] softmaxes its k largest entries and mixes those rows of
/// the bank [N, L] into one sub-vector [..., L]. Saves only the selection (int32 indices and weights, [S, k]) and the bank
/// reference, not the logits: the backward needs nothing else.
/// </summary>
internal sealed class TopKAdmixtureFunction : Function
{
    private Tensor? bank, selectedIndices, selectedWeights;
    private int[] logitsShape = [];

    public override string Name => "TopKAdmixture";

    public static Variable Apply(Variable logits, Variable bank, int topK)
    {
        // Checked before allocating the [S, k] selection, so a bad k is reported as such rather than as a bad shape.
        Check.TopKAdmixture("top-k admixture", logits.Data, bank.Data, topK);
        using var packedLogits = logits.Data.Contiguous();
        using var packedBank = bank.Data.Contiguous();
        int vectorCount = packedBank.Dim(0);
        int rowCount = checked((int)(packedLogits.ElementCount / vectorCount));
        var outputShape = packedLogits.ShapeArray();
        outputShape[^1] = packedBank.Dim(1);
        var result = Tensor.Empty(outputShape, logits.DType, logits.Device);
        using var indices = Tensor.Empty([rowCount, topK], DType.Int32, logits.Device);
        using var weights = Tensor.Empty([rowCount, topK], logits.DType, logits.Device);
        result.Backend.TopKAdmixture(packedLogits, packedBank, topK, result, indices, weights);
        var function = new TopKAdmixtureFunction { logitsShape = packedLogits.ShapeArray() };
        function.bank = function.Save(packedBank);
        function.selectedIndices = function.Save(indices);
        function.selectedWeights = function.Save(weights);
        return function.Finish(result, logits, bank);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Contiguous();
        var logitsGrad = needsGrad[0] ? Tensor.Empty(logitsShape, gradient.DType, gradient.Device) : null;
        // The backend accumulates into the bank gradient (a scatter-add), so it starts at zero.
        var bankGrad = needsGrad[1] ? GradientMath.ZerosLike(bank!) : null;
        gradient.Backend.TopKAdmixtureBackward(bank!, selectedIndices!, selectedWeights!, gradient, logitsGrad, bankGrad);
        return [logitsGrad, bankGrad];
    }
}
