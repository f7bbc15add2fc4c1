using System.Numerics;

namespace Engine.Cpu;

/// <summary>
/// Rotary position embedding in Hugging Face's "rotate half" layout: element i pairs with i + headDim/2.
/// The backward pass is the same rotation by the negative angle.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void Rope(Tensor input, Tensor positions, double theta, bool inverse, Tensor result)
    {
        Check.Compatible("rope", input, result);
        Check.SameShape("rope", input, result);
        Check.Rank("rope", input, 4);
        RequireContiguous("rope", input, "input");
        RequireContiguous("rope", result, "result");
        int tokens = input.Dim(2), headDim = input.Dim(3);
        if (headDim % 2 != 0)
        {
            throw new ArgumentException($"rope: the head dimension must be even, got {input.Describe()}");
        }
        if (positions.DType != DType.Int32 || positions.Rank != 1 || positions.Dim(0) != tokens || !positions.IsContiguous)
        {
            throw new ArgumentException($"rope: positions must be contiguous int32 [{tokens}] for {input.Describe()}, got {positions.Describe()}");
        }
        DispatchFloat("rope", input, () => RopeRun<float>(input, positions, theta, inverse, result), () => RopeRun<double>(input, positions, theta, inverse, result));
    }

    private void RopeRun<T>(Tensor input, Tensor positions, double theta, bool inverse, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int tokens = input.Dim(2), headDim = input.Dim(3), half = headDim / 2;
        long sequences = input.ElementCount / ((long)tokens * headDim);
        // Angles as Hugging Face computes them: inverse frequency 1 / theta^(2i/d), angle = position · frequency, in T's precision.
        var cos = new T[tokens * half];
        var sin = new T[tokens * half];
        int* position = Pointer<int>(positions);
        T thetaValue = FromDouble<T>(theta);
        for (int i = 0; i < half; i++)
        {
            T frequency = T.One / T.Pow(thetaValue, T.CreateTruncating(2 * i) / T.CreateTruncating(headDim));
            for (int t = 0; t < tokens; t++)
            {
                T angle = T.CreateTruncating(position[t]) * frequency;
                cos[t * half + i] = T.Cos(angle);
                sin[t * half + i] = inverse ? -T.Sin(angle) : T.Sin(angle);
            }
        }
        T* x = Pointer<T>(input), y = Pointer<T>(result);
        CpuParallel.For(sequences * tokens, Threads, Math.Max(1, 8192 / headDim), (start, end) =>
        {
            for (long vector = start; vector < end; vector++)
            {
                int token = (int)(vector % tokens);
                T* source = x + vector * headDim;
                T* target = y + vector * headDim;
                for (int i = 0; i < half; i++)
                {
                    T c = cos[token * half + i], s = sin[token * half + i];
                    T first = source[i], second = source[i + half];
                    target[i] = first * c - second * s;
                    target[i + half] = second * c + first * s;
                }
            }
        });
    }
}
