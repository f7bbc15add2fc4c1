using Engine.Training;
using Engine.Training.Data;

namespace Engine.Tests.Training;

/// <summary>Cycles through a fixed list of batches; its state is the position in the cycle.</summary>
public sealed class ListBatchSource(IReadOnlyList<Batch> batches) : IBatchSource
{
    private int position;

    public Batch Next() => batches[position++ % batches.Count];

    public string SaveState() => position.ToString(System.Globalization.CultureInfo.InvariantCulture);

    public void RestoreState(string state) => position = int.Parse(state, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Random next-token batches over a small vocabulary (targets are the ids shifted left; last position ignored).</summary>
    public static List<Batch> Random(int count, int batchSize, int tokens, int vocabulary, int seed)
    {
        var random = new Random(seed);
        var result = new List<Batch>();
        for (int b = 0; b < count; b++)
        {
            var ids = Enumerable.Range(0, batchSize * tokens).Select(_ => random.Next(vocabulary)).ToArray();
            var targets = new int[ids.Length];
            for (int i = 0; i < ids.Length; i++)
            {
                targets[i] = (i + 1) % tokens == 0 ? -100 : ids[i + 1];
            }
            result.Add(new Batch(ids, ids, targets, batchSize, tokens, Epoch: 0));
        }
        return result;
    }
}
