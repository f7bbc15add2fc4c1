namespace Engine.Autograd.Functions;

/// <summary>
/// Mean cross-entropy over rows whose target is not the ignore index, fused with log-softmax: forward keeps one
/// log-sum-exp per row, backward writes softmax − onehot directly. All rows ignored gives NaN, as PyTorch does.
/// </summary>
internal sealed class CrossEntropyFunction(int ignoreIndex) : Function
{
    private Tensor? logits, targets, logSumExp, counted;
    private int[] logitsShape = [];

    public override string Name => "CrossEntropy";

    public static Variable Apply(Variable logits, Tensor targets, int ignoreIndex)
    {
        if (logits.Rank < 2)
        {
            throw new ArgumentException($"cross-entropy: logits must be [..., vocabulary], got {logits.Data.Describe()}");
        }
        int vocabulary = logits.Dim(-1);
        using var rows = logits.Data.Reshape(-1, vocabulary);
        using var labels = targets.Reshape(-1);
        if (labels.ElementCount != rows.Dim(0))
        {
            throw new ArgumentException($"cross-entropy: targets {targets.Describe()} must have one entry per logits row of {logits.Data.Describe()}");
        }
        int rowCount = rows.Dim(0);
        var backend = rows.Backend;
        using var rowLoss = Tensor.Empty([rowCount], logits.DType, logits.Device);
        using var rowWeight = Tensor.Empty([rowCount], logits.DType, logits.Device);
        using var lse = Tensor.Empty([rowCount], logits.DType, logits.Device);
        backend.CrossEntropy(rows, labels, ignoreIndex, rowLoss, rowWeight, lse);
        using var total = Tensor.Empty([1], logits.DType, logits.Device);
        using var count = Tensor.Empty([1], logits.DType, logits.Device);
        backend.Sum(rowLoss, total);
        backend.Sum(rowWeight, count);
        var mean = Tensor.Empty([], logits.DType, logits.Device);
        using (var meanView = mean.Reshape(1))
        {
            backend.Binary(BinaryOp.Div, total, count, meanView);
        }
        var function = new CrossEntropyFunction(ignoreIndex) { logitsShape = logits.Data.ShapeArray() };
        function.logits = function.Save(rows);
        function.targets = function.Save(labels);
        function.logSumExp = function.Save(lse);
        function.counted = function.Save(count);
        return function.Finish(mean, logits);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var backend = outputGrad.Backend;
        // Each counted row's share of the upstream gradient: g / count, kept on the device (no host round trip).
        using var scale = Tensor.Empty([1], outputGrad.DType, outputGrad.Device);
        using (var upstream = outputGrad.Reshape(1))
        {
            backend.Binary(BinaryOp.Div, upstream, counted!, scale);
        }
        var logitsGrad = GradientMath.EmptyLike(logits!);
        backend.CrossEntropyBackward(logits!, targets!, ignoreIndex, logSumExp!, scale, logitsGrad);
        using (logitsGrad)
        {
            return [logitsGrad.Reshape(logitsShape)];
        }
    }
}
