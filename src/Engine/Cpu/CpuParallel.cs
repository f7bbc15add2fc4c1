namespace Engine.Cpu;

/// <summary>Splits a range of work items over the backend's threads in contiguous chunks.</summary>
internal static class CpuParallel
{
    /// <summary>
    /// Runs body(start, end) over [0, count) in at most <paramref name="threads"/> chunks; work below
    /// <paramref name="minimumPerChunk"/> items per chunk stays on the calling thread (thread hand-off costs microseconds).
    /// </summary>
    public static void For(long count, int threads, long minimumPerChunk, Action<long, long> body)
    {
        if (count <= 0)
        {
            return;
        }
        long chunks = Math.Min(threads, Math.Max(1, count / Math.Max(1, minimumPerChunk)));
        if (chunks <= 1)
        {
            body(0, count);
            return;
        }
        Parallel.For(0, (int)chunks, new ParallelOptions { MaxDegreeOfParallelism = (int)chunks }, chunk =>
        {
            long start = count * chunk / chunks;
            long end = count * (chunk + 1) / chunks;
            body(start, end);
        });
    }
}
