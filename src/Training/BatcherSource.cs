using System.Text.Json;
using Engine.Training.Data;

namespace Engine.Training;

/// <summary>A <see cref="Batcher"/> as the trainer's resumable batch stream; its state is the batcher's (epoch, position) as JSON.</summary>
public sealed class BatcherSource(Batcher batcher) : IBatchSource
{
    public Batcher Batcher { get; } = batcher;

    public Batch Next() => Batcher.Next();

    public string SaveState() => JsonSerializer.Serialize(Batcher.State);

    public void RestoreState(string state) =>
        Batcher.State = JsonSerializer.Deserialize<BatcherState>(state);
}
