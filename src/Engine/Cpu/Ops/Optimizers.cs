using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>Optimizer kernels: AdamW's fused update and the sum of squares behind global-norm clipping.</summary>
public sealed unsafe partial class CpuBackend
{
    public void SumOfSquares(Tensor input, Tensor result)
    {
        Check.Compatible("sum of squares", input, result);
        RequireContiguous("sum of squares", input, "input");
        if (result.ElementCount != 1)
        {
            throw new ArgumentException($"sum of squares: result must have one element, got {result.Describe()}");
        }
        DispatchFloat("sum of squares", input, () => SumOfSquaresRun<float>(input, result), () => SumOfSquaresRun<double>(input, result));
    }

    private void SumOfSquaresRun<T>(Tensor input, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* values = Pointer<T>(input);
        const int block = 4096;
        long blocks = (input.ElementCount + block - 1) / block;
        var partials = new double[blocks];
        // Blocks summed in T (vectorised), blocks added in double: accurate for millions of elements, deterministic for any thread count.
        CpuParallel.For(blocks, Threads, 16, (start, end) =>
        {
            for (long b = start; b < end; b++)
            {
                long first = b * block;
                int length = (int)Math.Min(block, input.ElementCount - first);
                partials[b] = double.CreateTruncating(TensorPrimitives.SumOfSquares(new ReadOnlySpan<T>(values + first, length)));
            }
        });
        double total = 0;
        foreach (double partial in partials)
        {
            total += partial;
        }
        *Pointer<T>(result) = T.CreateTruncating(total);
    }

    public void AdamWStep(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, AdamWStepSettings settings)
    {
        foreach (var (tensor, role) in new[] { (gradient, "gradient"), (firstMoment, "first moment"), (secondMoment, "second moment") })
        {
            Check.Compatible("adamw", parameter, tensor);
            Check.SameShape("adamw", parameter, tensor);
            RequireContiguous("adamw", tensor, role);
        }
        RequireContiguous("adamw", parameter, "parameter");
        if (settings.Step < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(settings), $"adamw: the step count starts at 1, got {settings.Step}");
        }
        DispatchFloat("adamw", parameter,
            () => AdamWRun<float>(parameter, gradient, firstMoment, secondMoment, settings),
            () => AdamWRun<double>(parameter, gradient, firstMoment, secondMoment, settings));
    }

    private void AdamWRun<T>(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, AdamWStepSettings settings)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* p = Pointer<T>(parameter), g = Pointer<T>(gradient), m = Pointer<T>(firstMoment), v = Pointer<T>(secondMoment);
        double biasCorrection1 = 1 - Math.Pow(settings.Beta1, settings.Step);
        double biasCorrection2 = 1 - Math.Pow(settings.Beta2, settings.Step);
        T decay = FromDouble<T>(1 - settings.LearningRate * settings.WeightDecay);
        T beta1 = FromDouble<T>(settings.Beta1), oneMinusBeta1 = FromDouble<T>(1 - settings.Beta1);
        T beta2 = FromDouble<T>(settings.Beta2), oneMinusBeta2 = FromDouble<T>(1 - settings.Beta2);
        T stepSize = FromDouble<T>(settings.LearningRate / biasCorrection1);
        T inverseRootCorrection2 = FromDouble<T>(1 / Math.Sqrt(biasCorrection2));
        T epsilon = FromDouble<T>(settings.Epsilon);
        CpuParallel.For(parameter.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                T gradientValue = g[i];
                T first = beta1 * m[i] + oneMinusBeta1 * gradientValue;
                T second = beta2 * v[i] + oneMinusBeta2 * gradientValue * gradientValue;
                m[i] = first;
                v[i] = second;
                p[i] = p[i] * decay - stepSize * first / (T.Sqrt(second) * inverseRootCorrection2 + epsilon);
            }
        });
    }
}
