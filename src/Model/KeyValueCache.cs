namespace Engine.Model;

/// <summary>
/// Keys and values of past positions for incremental decoding: per layer, buffers [batch, kvHeads, capacity, headDim]
/// filled in place. Only used under no-grad (generation).
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private readonly Tensor[] keys, values;

    public KeyValueCache(LlamaConfig config, int batch, int capacity, Device? device = null)
    {
        Capacity = capacity;
        using var untracked = TensorScope.Untracked();
        keys = new Tensor[config.NumHiddenLayers];
        values = new Tensor[config.NumHiddenLayers];
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            keys[layer] = Tensor.Empty([batch, config.KeyValueHeads, capacity, config.HeadDim], DType.Float32, device);
            values[layer] = Tensor.Empty([batch, config.KeyValueHeads, capacity, config.HeadDim], DType.Float32, device);
        }
    }

    public int Capacity { get; }

    /// <summary>Positions already stored (the next token's position).</summary>
    public int Length { get; private set; }

    /// <summary>Stores this step's keys and values [batch, kvHeads, tokens, headDim] of one layer; returns packed copies of all positions so far.</summary>
    internal (Tensor Keys, Tensor Values) Append(int layer, Tensor newKeys, Tensor newValues)
    {
        int tokens = newKeys.Dim(2);
        if (Length + tokens > Capacity)
        {
            throw new InvalidOperationException($"key/value cache full: {Length} stored + {tokens} new > capacity {Capacity}");
        }
        using (var keyWindow = keys[layer].Narrow(2, Length, tokens))
        using (var valueWindow = values[layer].Narrow(2, Length, tokens))
        {
            keyWindow.CopyFrom(newKeys);
            valueWindow.CopyFrom(newValues);
        }
        using var allKeys = keys[layer].Narrow(2, 0, Length + tokens);
        using var allValues = values[layer].Narrow(2, 0, Length + tokens);
        return (allKeys.Contiguous(), allValues.Contiguous());
    }

    /// <summary>Called once per forward pass, after every layer appended.</summary>
    internal void Advance(int tokens) => Length += tokens;

    public void Dispose()
    {
        foreach (var tensor in keys.Concat(values))
        {
            tensor.Dispose();
        }
    }
}
