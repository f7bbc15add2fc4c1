using System.Runtime.CompilerServices;

namespace Engine;

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"): a counter-based generator, so element i
/// of a random tensor depends only on (seed, i) and every backend (CPU, ILGPU, CUDA) produces the same values.
/// </summary>
public static class Philox
{
    private const uint MultiplierA = 0xD2511F53, MultiplierB = 0xCD9E8D57;
    private const uint WeylA = 0x9E3779B9, WeylB = 0xBB67AE85;

    /// <summary>The first two 32-bit words of the block at counter <paramref name="index"/> under key <paramref name="seed"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (uint First, uint Second) Block(ulong seed, ulong index)
    {
        uint c0 = (uint)index, c1 = (uint)(index >> 32), c2 = 0, c3 = 0;
        uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
        for (int round = 0; round < 10; round++)
        {
            ulong productA = (ulong)MultiplierA * c0;
            ulong productB = (ulong)MultiplierB * c2;
            uint n0 = (uint)(productB >> 32) ^ c1 ^ k0;
            uint n2 = (uint)(productA >> 32) ^ c3 ^ k1;
            c1 = (uint)productB;
            c3 = (uint)productA;
            c0 = n0;
            c2 = n2;
            k0 += WeylA;
            k1 += WeylB;
        }
        return (c0, c1);
    }

    /// <summary>Uniform in (0, 1): never exactly 0 (so log is safe) and never 1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static double Uniform(ulong seed, ulong index) => (Block(seed, index).First + 0.5) * (1.0 / 4294967296.0);

    /// <summary>Standard normal by Box–Muller on the block's two words.</summary>
    public static double Normal(ulong seed, ulong index)
    {
        var (first, second) = Block(seed, index);
        double u1 = (first + 0.5) * (1.0 / 4294967296.0);
        double u2 = (second + 0.5) * (1.0 / 4294967296.0);
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
