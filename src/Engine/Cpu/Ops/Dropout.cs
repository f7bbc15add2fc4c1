using System.Numerics;

namespace Engine.Cpu;

/// <summary>Inverted dropout with a counter-based mask: backward regenerates the mask from the seed instead of storing it.</summary>
public sealed unsafe partial class CpuBackend
{
    public void Dropout(Tensor input, double probability, ulong seed, Tensor result)
    {
        Check.Compatible("dropout", input, result);
        Check.SameShape("dropout", input, result);
        RequireContiguous("dropout", input, "input");
        RequireContiguous("dropout", result, "result");
        if (probability is < 0 or >= 1)
        {
            throw new ArgumentOutOfRangeException(nameof(probability), $"dropout: probability must be in [0, 1), got {probability}");
        }
        DispatchFloat("dropout", input, () => DropoutRun<float>(input, probability, seed, result), () => DropoutRun<double>(input, probability, seed, result));
    }

    private void DropoutRun<T>(Tensor input, double probability, ulong seed, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* x = Pointer<T>(input), y = Pointer<T>(result);
        T keepScale = FromDouble<T>(1.0 / (1.0 - probability));
        CpuParallel.For(input.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                y[i] = Philox.Uniform(seed, (ulong)i) >= probability ? x[i] * keepScale : T.Zero;
            }
        });
    }
}
