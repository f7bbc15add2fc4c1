using Engine.Autograd;
using Engine.Model;
using Engine.Training.Data;

namespace Engine.Training.Evaluation;

/// <summary>Mean next-token cross-entropy over every position that has a target, across batches (no gradients).</summary>
public static class TokenLoss
{
    /// <param name="Loss">Mean loss per predicted token; NaN when there was none.</param>
    /// <param name="Tokens">Predicted tokens: positions whose target is not -100.</param>
    public sealed record Result(double Loss, long Tokens);

    /// <summary>Each batch's mean loss weighted by its predicted tokens, so every token counts once whatever the batching.</summary>
    /// <param name="batchDone">Called after each batch with the number of batches done.</param>
    public static Result Evaluate(LlamaModel model, IReadOnlyList<Batch> batches, Action<int>? batchDone = null)
    {
        using var noGrad = GradMode.NoGrad();
        double weighted = 0;
        long tokens = 0;
        for (int i = 0; i < batches.Count; i++)
        {
            var batch = batches[i];
            int count = batch.TargetCount;
            if (count > 0)
            {
                using var scope = new TensorScope();
                var (inputIds, targets) = batch.ToTensors(model.Device);
                weighted += model.Loss(inputIds, targets).Data.Item() * count;
                tokens += count;
            }
            batchDone?.Invoke(i + 1);
        }
        return new Result(tokens == 0 ? double.NaN : weighted / tokens, tokens);
    }
}
