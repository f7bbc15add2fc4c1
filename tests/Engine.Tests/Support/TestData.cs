namespace Engine.Tests.Support;

/// <summary>Where random test inputs are drawn from: every domain excludes zero and the edges where a function is singular.</summary>
public enum Domain
{
    /// <summary>±[0.1, 1.5]: both signs, never zero.</summary>
    Signed,
    /// <summary>[0.5, 2]: for log, sqrt, rsqrt and divisors.</summary>
    Positive,
}

public static class TestData
{
    /// <summary>
    /// Seed for a named case. Fixed by default so a failure reproduces; set ENGINE_TEST_SEED to draw a different set of inputs
    /// (the failing seed is printed in every assertion message).
    /// </summary>
    public static int SeedFor(string name)
    {
        int salt = int.TryParse(Environment.GetEnvironmentVariable("ENGINE_TEST_SEED"), out int value) ? value : 0;
        unchecked
        {
            int hash = (int)2166136261;
            foreach (char c in name)
            {
                hash = (hash ^ c) * 16777619;
            }
            return hash ^ salt;
        }
    }

    public static double[] Random(Random random, long count, Domain domain)
    {
        var values = new double[count];
        for (long i = 0; i < count; i++)
        {
            values[i] = domain switch
            {
                Domain.Positive => 0.5 + 1.5 * random.NextDouble(),
                _ => (0.1 + 1.4 * random.NextDouble()) * (random.Next(2) == 0 ? -1 : 1),
            };
        }
        return values;
    }

    /// <summary>
    /// Rows whose entries are pairwise at least 0.1 apart: each row is a random permutation of the levels 0.2·i (centred on
    /// zero), each moved by at most ±0.05. For operations that rank entries (top-k), where a near-tie would change the
    /// selection within a finite-difference step.
    /// </summary>
    public static double[] SeparatedRows(Random random, int rowCount, int width)
    {
        var values = new double[(long)rowCount * width];
        for (int row = 0; row < rowCount; row++)
        {
            var levels = Enumerable.Range(0, width).ToArray();
            random.Shuffle(levels);
            for (int column = 0; column < width; column++)
            {
                values[(long)row * width + column] = 0.2 * (levels[column] - (width - 1) / 2.0) + 0.1 * (random.NextDouble() - 0.5);
            }
        }
        return values;
    }

    public static double[] RoundToFloat(double[] values) => values.Select(v => (double)(float)v).ToArray();
}
