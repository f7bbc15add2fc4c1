namespace Engine.Training.Data;

/// <summary>
/// A batch of <see cref="BatchSize"/> rows of <see cref="SequenceLength"/> tokens, as flat row-major arrays
/// (element [row, t] at <c>row * SequenceLength + t</c>).
/// </summary>
/// <remarks>
/// <see cref="Labels"/> is aligned with <see cref="InputIds"/> (see <see cref="TrainingExample"/>): it says which
/// tokens are to be predicted. The loss is next-token: the output at position t predicts token t + 1, so
/// <see cref="Targets"/> holds what the output at each position is scored against:
/// <c>Targets[row, t] = Labels[row, t + 1]</c> for t &lt; SequenceLength - 1, and
/// <c>Targets[row, SequenceLength - 1] = -100</c>. Positions whose target is -100 (prompt, padding, row end) take no
/// loss. Padding is on the right, so with causal attention it never influences real tokens.
/// </remarks>
/// <param name="InputIds">Token ids fed to the model.</param>
/// <param name="Labels">Per-token labels aligned with <paramref name="InputIds"/>; -100 where no loss is taken.</param>
/// <param name="Targets">Labels shifted left by one within each row, -100 at each row's last position.</param>
/// <param name="BatchSize">Rows in this batch (the last batch of an epoch may be smaller).</param>
/// <param name="SequenceLength">Tokens per row.</param>
/// <param name="Epoch">The epoch this batch belongs to.</param>
public sealed record Batch(int[] InputIds, int[] Labels, int[] Targets, int BatchSize, int SequenceLength, int Epoch)
{
    /// <summary>Positions that take loss: the divisor of a mean token loss.</summary>
    public int TargetCount => Targets.Count(target => target != TrainingExample.IgnoreLabel);
}

public static class BatchTensors
{
    /// <summary>The batch's input ids and next-token targets as int32 [BatchSize, SequenceLength] tensors on <paramref name="device"/>.</summary>
    public static (Tensor InputIds, Tensor Targets) ToTensors(this Batch batch, Device device) =>
        (Tensor.FromArray<int>(batch.InputIds, [batch.BatchSize, batch.SequenceLength], device),
         Tensor.FromArray<int>(batch.Targets, [batch.BatchSize, batch.SequenceLength], device));
}
