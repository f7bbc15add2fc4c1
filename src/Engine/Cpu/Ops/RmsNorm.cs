using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>RMSNorm over the last axis (Llama): y = x · rsqrt(mean(x²) + ε) · w, forward and backward.</summary>
public sealed unsafe partial class CpuBackend
{
    public void RmsNorm(Tensor input, Tensor weight, double epsilon, Tensor result, Tensor inverseRms)
    {
        int width = ValidateRmsNorm("rms-norm", input, weight, inverseRms);
        Check.SameShape("rms-norm", input, result);
        RequireContiguous("rms-norm", result, "result");
        DispatchFloat("rms-norm", input, () => RmsNormRun<float>(input, weight, epsilon, result, inverseRms, width), () => RmsNormRun<double>(input, weight, epsilon, result, inverseRms, width));
    }

    private static int ValidateRmsNorm(string operation, Tensor input, Tensor weight, Tensor inverseRms)
    {
        Check.Compatible(operation, input, weight);
        Check.Compatible(operation, input, inverseRms);
        RequireContiguous(operation, input, "input");
        RequireContiguous(operation, weight, "weight");
        RequireContiguous(operation, inverseRms, "inverse rms");
        int width = input.Dim(-1);
        Check.Shape(operation, weight, [width], "weight");
        if (inverseRms.ElementCount * width != input.ElementCount)
        {
            throw new ArgumentException($"{operation}: inverse rms {inverseRms.Describe()} needs one element per row of {input.Describe()}");
        }
        return width;
    }

    private void RmsNormRun<T>(Tensor input, Tensor weight, double epsilon, Tensor result, Tensor inverseRms, int width) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* x = Pointer<T>(input), w = Pointer<T>(weight), y = Pointer<T>(result), rstd = Pointer<T>(inverseRms);
        T eps = FromDouble<T>(epsilon), count = T.CreateTruncating(width);
        CpuParallel.For(inverseRms.ElementCount, Threads, Math.Max(1, 16384 / width), (start, end) =>
        {
            var weights = new ReadOnlySpan<T>(w, width);
            for (long row = start; row < end; row++)
            {
                var values = new ReadOnlySpan<T>(x + row * width, width);
                var output = new Span<T>(y + row * width, width);
                T inverse = T.One / T.Sqrt(TensorPrimitives.SumOfSquares(values) / count + eps);
                rstd[row] = inverse;
                TensorPrimitives.Multiply(values, inverse, output);
                TensorPrimitives.Multiply(output, weights, output);
            }
        });
    }

    public void RmsNormBackward(Tensor input, Tensor weight, Tensor inverseRms, Tensor outputGrad, Tensor inputGrad, Tensor? weightGrad)
    {
        int width = ValidateRmsNorm("rms-norm backward", input, weight, inverseRms);
        Check.SameShape("rms-norm backward", input, outputGrad);
        Check.SameShape("rms-norm backward", input, inputGrad);
        RequireContiguous("rms-norm backward", outputGrad, "output gradient");
        RequireContiguous("rms-norm backward", inputGrad, "input gradient");
        if (weightGrad is not null)
        {
            Check.SameShape("rms-norm backward", weight, weightGrad);
            RequireContiguous("rms-norm backward", weightGrad, "weight gradient");
        }
        DispatchFloat("rms-norm backward", input,
            () => RmsNormBackwardRun<float>(input, weight, inverseRms, outputGrad, inputGrad, weightGrad, width),
            () => RmsNormBackwardRun<double>(input, weight, inverseRms, outputGrad, inputGrad, weightGrad, width));
    }

    private void RmsNormBackwardRun<T>(Tensor input, Tensor weight, Tensor inverseRms, Tensor outputGrad, Tensor inputGrad, Tensor? weightGrad, int width)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        T* x = Pointer<T>(input), w = Pointer<T>(weight), rstd = Pointer<T>(inverseRms), dy = Pointer<T>(outputGrad), dx = Pointer<T>(inputGrad);
        long rows = inverseRms.ElementCount;
        int chunks = (int)Math.Clamp(rows / Math.Max(1, 16384 / width), 1, Threads);
        // Each chunk sums its rows' weight gradient privately; partials are added in chunk order (deterministic).
        var partialWeightGrads = weightGrad is null ? null : new T[chunks][];
        T count = T.CreateTruncating(width);
        CpuParallel.For(chunks, chunks, 1, (firstChunk, lastChunk) =>
        {
            for (long chunk = firstChunk; chunk < lastChunk; chunk++)
            {
                long start = rows * chunk / chunks, end = rows * (chunk + 1) / chunks;
                var weightPartial = partialWeightGrads is null ? null : partialWeightGrads[chunk] = new T[width];
                var weighted = new T[width];
                var weights = new ReadOnlySpan<T>(w, width);
                for (long row = start; row < end; row++)
                {
                    var values = new ReadOnlySpan<T>(x + row * width, width);
                    var gradient = new ReadOnlySpan<T>(dy + row * width, width);
                    var result = new Span<T>(dx + row * width, width);
                    T inverse = rstd[row];
                    // g = dy ∘ w;  dx = r · (g − x · r² · mean(g ∘ x))
                    TensorPrimitives.Multiply(gradient, weights, weighted);
                    T projection = TensorPrimitives.Dot(weighted, values) / count * inverse * inverse;
                    TensorPrimitives.MultiplyAdd(values, -projection, (ReadOnlySpan<T>)weighted, result);
                    TensorPrimitives.Multiply(result, inverse, result);
                    if (weightPartial is not null)
                    {
                        // dw += dy ∘ x · r
                        for (int i = 0; i < width; i++)
                        {
                            weightPartial[i] += gradient[i] * values[i] * inverse;
                        }
                    }
                }
            }
        });
        if (weightGrad is not null && partialWeightGrads is not null)
        {
            var accumulator = new Span<T>(Pointer<T>(weightGrad), width);
            foreach (var partial in partialWeightGrads)
            {
                TensorPrimitives.Add(accumulator, partial, accumulator);
            }
        }
    }
}
