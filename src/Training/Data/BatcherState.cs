namespace Engine.Training.Data;

/// <summary>
/// Where a <see cref="Batcher"/> stands: the next batch starts in <see cref="Epoch"/> at <see cref="Position"/> (an
/// index into the epoch's shuffled example order in padding mode, a token offset into the epoch's packed stream in
/// packing mode). Save it with a checkpoint and restore it through <see cref="Batcher.State"/> to continue with
/// exactly the batch that would have come next. Serializes with System.Text.Json as {"Epoch":..,"Position":..}.
/// </summary>
public readonly record struct BatcherState(int Epoch, int Position);
