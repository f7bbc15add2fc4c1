namespace Engine.Tests.Support;

public static class Assertions
{
    /// <summary>
    /// Element-wise |actual − expected| ≤ relative · (|expected| + scale) where scale is the largest |expected|:
    /// errors of rounded arithmetic grow with the magnitude of the terms summed, so an element that cancels to near zero
    /// is judged against the size of its neighbours rather than against itself.
    /// </summary>
    public static void Close(double[] expected, double[] actual, double relative, string context)
    {
        Assert.True(expected.Length == actual.Length, $"{context}: expected {expected.Length} values, got {actual.Length}");
        double scale = expected.Length == 0 ? 0 : expected.Max(Math.Abs);
        double worst = 0;
        int worstIndex = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            double allowed = relative * (Math.Abs(expected[i]) + scale) + 1e-300;
            if (double.IsNaN(actual[i]) || error / allowed > worst)
            {
                worst = double.IsNaN(actual[i]) ? double.PositiveInfinity : error / allowed;
                worstIndex = i;
            }
        }
        Assert.True(worst <= 1, $"{context}: element {worstIndex} is {(worstIndex >= 0 ? actual[worstIndex] : 0):G9}, expected {(worstIndex >= 0 ? expected[worstIndex] : 0):G9} (error {worst:G3}x the allowed {relative:G2} relative; scale {scale:G3})");
    }
}
