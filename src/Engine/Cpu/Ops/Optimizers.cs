using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace Engine.Cpu;

/// <summary>Optimizer kernels: AdamW's fused update (plain, and with a step count per element) and the sum of squares behind global-norm clipping.</summary>
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
        ValidateAdamW("adamw", parameter, gradient, firstMoment, secondMoment);
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
        var update = new AdamWUpdate<T>(parameter, gradient, firstMoment, secondMoment, settings);
        var (stepSize, inverseRootCorrection2) = AdamWUpdate<T>.BiasCorrections(settings, settings.Step);
        CpuParallel.For(parameter.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                update.Apply(i, stepSize, inverseRootCorrection2);
            }
        });
    }

    public void AdamWAgedStep(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, Tensor age, AdamWStepSettings settings)
    {
        const string name = "aged adamw";
        ValidateAdamW(name, parameter, gradient, firstMoment, secondMoment);
        Check.SameDevice(name, parameter, age);
        if (age.DType != DType.Int32 || !age.Shape.SequenceEqual(parameter.Shape))
        {
            throw new ArgumentException($"{name}: age {age.Describe()} must be int32 with the parameter's shape ({parameter.Describe()})");
        }
        RequireContiguous(name, age, "age");
        // Checked before any element moves: the step either happens everywhere or nowhere.
        if (age.ElementCount > 0)
        {
            int youngest = TensorPrimitives.Min<int>(Span<int>(age)), oldest = TensorPrimitives.Max<int>(Span<int>(age));
            if (youngest < 0 || oldest == int.MaxValue)
            {
                throw new ArgumentOutOfRangeException(nameof(age), $"{name}: ages must be in [0, {int.MaxValue}) before the step, got [{youngest}, {oldest}] in {age.Describe()}");
            }
        }
        DispatchFloat(name, parameter,
            () => AdamWAgedRun<float>(parameter, gradient, firstMoment, secondMoment, age, settings),
            () => AdamWAgedRun<double>(parameter, gradient, firstMoment, secondMoment, age, settings));
    }

    private void AdamWAgedRun<T>(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, Tensor age, AdamWStepSettings settings)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        var update = new AdamWUpdate<T>(parameter, gradient, firstMoment, secondMoment, settings);
        int* ages = Pointer<int>(age);
        CpuParallel.For(parameter.ElementCount, Threads, 16384, (start, end) =>
        {
            // The bias corrections take two Math.Pow calls, far more than the update itself; a slot's age is the number
            // of steps since it was (re)grown, so a matrix holds few distinct ages, and a small per-worker cache keyed by
            // age computes each once.
            const int cacheSize = 256;
            var cachedAges = new int[cacheSize];
            var stepSizes = new T[cacheSize];
            var inverseRootCorrections2 = new T[cacheSize];
            for (long i = start; i < end; i++)
            {
                int elementAge = ++ages[i];
                int slot = elementAge & (cacheSize - 1);
                if (cachedAges[slot] != elementAge)
                {
                    cachedAges[slot] = elementAge;
                    (stepSizes[slot], inverseRootCorrections2[slot]) = AdamWUpdate<T>.BiasCorrections(settings, elementAge);
                }
                update.Apply(i, stepSizes[slot], inverseRootCorrections2[slot]);
            }
        });
    }

    private static void ValidateAdamW(string operation, Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment)
    {
        foreach (var (tensor, role) in new[] { (gradient, "gradient"), (firstMoment, "first moment"), (secondMoment, "second moment") })
        {
            Check.Compatible(operation, parameter, tensor);
            Check.SameShape(operation, parameter, tensor);
            RequireContiguous(operation, tensor, role);
        }
        RequireContiguous(operation, parameter, "parameter");
    }

    /// <summary>
    /// One element of AdamW, in the parameter's dtype, shared by the plain and the aged step so that equal step counts give
    /// equal bits. The bias corrections enter as the step size lr / (1 − β1ᵗ) and 1 / √(1 − β2ᵗ).
    /// </summary>
    private readonly struct AdamWUpdate<T> where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        private readonly T* parameters, gradients, firstMoments, secondMoments;
        private readonly T decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, epsilon;

        public AdamWUpdate(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, AdamWStepSettings settings)
        {
            parameters = Pointer<T>(parameter);
            gradients = Pointer<T>(gradient);
            firstMoments = Pointer<T>(firstMoment);
            secondMoments = Pointer<T>(secondMoment);
            decay = FromDouble<T>(1 - settings.LearningRate * settings.WeightDecay);
            beta1 = FromDouble<T>(settings.Beta1);
            oneMinusBeta1 = FromDouble<T>(1 - settings.Beta1);
            beta2 = FromDouble<T>(settings.Beta2);
            oneMinusBeta2 = FromDouble<T>(1 - settings.Beta2);
            epsilon = FromDouble<T>(settings.Epsilon);
        }

        public static (T StepSize, T InverseRootCorrection2) BiasCorrections(AdamWStepSettings settings, long step) =>
            (FromDouble<T>(settings.LearningRate / (1 - Math.Pow(settings.Beta1, step))), FromDouble<T>(1 / Math.Sqrt(1 - Math.Pow(settings.Beta2, step))));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Apply(long i, T stepSize, T inverseRootCorrection2)
        {
            T gradientValue = gradients[i];
            T first = beta1 * firstMoments[i] + oneMinusBeta1 * gradientValue;
            T second = beta2 * secondMoments[i] + oneMinusBeta2 * gradientValue * gradientValue;
            firstMoments[i] = first;
            secondMoments[i] = second;
            parameters[i] = parameters[i] * decay - stepSize * first / (T.Sqrt(second) * inverseRootCorrection2 + epsilon);
        }
    }
}
