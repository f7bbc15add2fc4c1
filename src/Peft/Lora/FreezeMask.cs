namespace Engine.Peft.Lora;

/// <summary>
/// LoRA-SP's seeded choice of which entries of A [r, in] or B [out, r] train. The frozen count is
/// round(fraction · units) (half away from zero), the rest train; the choice is a seeded shuffle, so it is reproducible
/// from (seed, module, matrix, draw number) alone and a resumed run redraws the same masks.
/// </summary>
internal static class FreezeMask
{
    /// <summary>Ascending flat indices of the trainable entries of a [rows, columns] matrix whose rank axis is <paramref name="rankAxis"/>.</summary>
    public static int[] TrainableIndices(string matrixName, int rows, int columns, int rankAxis, LoraSparsityOptions options, ulong seed)
    {
        bool byRank = options.Granularity == FreezeGranularity.Row;
        int unitCount = byRank ? (rankAxis == 0 ? rows : columns) : rows * columns;
        int frozenCount = (int)Math.Round(options.FrozenFraction * unitCount, MidpointRounding.AwayFromZero);
        int trainableCount = unitCount - frozenCount;
        if (trainableCount == 0)
        {
            throw new ArgumentException($"lora-sp: {matrixName} [{rows}, {columns}] would have nothing left to train: freezing {options.FrozenFraction} of its " +
                $"{unitCount} {(byRank ? "rank components" : "entries")} freezes all of them (use a higher rank, a smaller fraction or element granularity)");
        }
        var order = Enumerable.Range(0, unitCount).ToArray();
        new Random(unchecked((int)(seed ^ (seed >> 32)))).Shuffle(order);
        var trainableUnits = order.AsSpan(0, trainableCount).ToArray();
        Array.Sort(trainableUnits);
        if (!byRank)
        {
            return trainableUnits;
        }
        // A rank component is a row of A (contiguous) or a column of B (stride r).
        var result = new List<int>(trainableCount * (rankAxis == 0 ? columns : rows));
        if (rankAxis == 0)
        {
            foreach (int row in trainableUnits)
            {
                result.AddRange(Enumerable.Range(row * columns, columns));
            }
        }
        else
        {
            for (int row = 0; row < rows; row++)
            {
                result.AddRange(trainableUnits.Select(column => row * columns + column));
            }
        }
        return result.ToArray();
    }
}
