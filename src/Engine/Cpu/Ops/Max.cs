using System.Numerics;

namespace Engine.Cpu;

/// <summary>Max over the last axis with its argmax; backward routes the gradient to the argmax.</summary>
public sealed unsafe partial class CpuBackend
{
    public void MaxLastAxis(Tensor input, Tensor result, Tensor argmax)
    {
        RequireContiguous("max", input, "input");
        Check.Compatible("max", input, result);
        Check.Shape("max", result, input.Shape[..^1], "result");
        Check.Shape("max", argmax, input.Shape[..^1], "argmax");
        if (argmax.DType != DType.Int32)
        {
            throw new ArgumentException($"max: argmax must be int32, got {argmax.Describe()}");
        }
        DispatchFloat("max", input, () => MaxRun<float>(input, result, argmax), () => MaxRun<double>(input, result, argmax));
    }

    private void MaxRun<T>(Tensor input, Tensor result, Tensor argmax) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int width = input.Dim(-1);
        T* source = Pointer<T>(input), maxima = Pointer<T>(result);
        int* indices = Pointer<int>(argmax);
        CpuParallel.For(result.ElementCount, Threads, 256, (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                T* values = source + row * width;
                int best = 0;
                for (int i = 1; i < width; i++)
                {
                    // Strictly greater: ties keep the first index; NaN wins so it propagates.
                    if (values[i] > values[best] || (T.IsNaN(values[i]) && !T.IsNaN(values[best])))
                    {
                        best = i;
                    }
                }
                maxima[row] = values[best];
                indices[row] = best;
            }
        });
    }

    public void MaxLastAxisBackward(Tensor argmax, Tensor outputGrad, Tensor inputGrad)
    {
        RequireContiguous("max backward", inputGrad, "input gradient");
        RequireContiguous("max backward", outputGrad, "output gradient");
        Check.SameDType("max backward", outputGrad, inputGrad);
        DispatchFloat("max backward", inputGrad, () => MaxBackwardRun<float>(argmax, outputGrad, inputGrad), () => MaxBackwardRun<double>(argmax, outputGrad, inputGrad));
    }

    private void MaxBackwardRun<T>(Tensor argmax, Tensor outputGrad, Tensor inputGrad) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int width = inputGrad.Dim(-1);
        T* gradients = Pointer<T>(outputGrad), target = Pointer<T>(inputGrad);
        int* indices = Pointer<int>(argmax);
        for (long row = 0; row < outputGrad.ElementCount; row++)
        {
            target[row * width + indices[row]] += gradients[row];
        }
    }
}
