using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>Sum over axes (keep-dims form): the reduction behind sum/mean and every broadcasting gradient.</summary>
public sealed unsafe partial class CpuBackend
{
    public void Sum(Tensor input, Tensor result)
    {
        Check.Compatible("sum", input, result);
        if (input.Rank != result.Rank)
        {
            throw new ArgumentException($"sum: result must keep the input's rank: {input.Describe()} -> {result.Describe()}");
        }
        for (int axis = 0; axis < input.Rank; axis++)
        {
            if (result.shape[axis] != input.shape[axis] && result.shape[axis] != 1)
            {
                throw new ArgumentException($"sum: cannot reduce {input.Describe()} to {result.Describe()} (axis {axis})");
            }
        }
        RequireContiguous("sum", result, "result");
        DispatchFloat("sum", input, () => SumRun<float>(input, result), () => SumRun<double>(input, result));
    }

    private void SumRun<T>(Tensor input, Tensor result) where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int rank = input.Rank;
        int leadingReduced = 0;
        while (leadingReduced < rank && result.shape[leadingReduced] == 1)
        {
            leadingReduced++;
        }
        bool restKept = true;
        for (int axis = leadingReduced; axis < rank; axis++)
        {
            restKept &= result.shape[axis] == input.shape[axis];
        }
        T* source = Pointer<T>(input), target = Pointer<T>(result);
        if (restKept && input.IsContiguous)
        {
            // Leading axes reduced, trailing kept (bias-style gradients): add whole rows, split by column blocks so
            // each thread owns its slice of the result and the order of additions is fixed.
            long width = result.ElementCount;
            long rows = input.ElementCount / Math.Max(1, width);
            CpuParallel.For(width, Threads, 4096, (start, end) =>
            {
                var accumulator = new Span<T>(target + start, (int)(end - start));
                accumulator.Clear();
                for (long row = 0; row < rows; row++)
                {
                    TensorPrimitives.Add(accumulator, new ReadOnlySpan<T>(source + row * width + start, (int)(end - start)), accumulator);
                }
            });
            return;
        }
        // General case: permute so kept axes come first and reduced ones last, then each result element sums a strided block.
        var kept = Enumerable.Range(0, rank).Where(axis => result.shape[axis] == input.shape[axis]).ToArray();
        var reduced = Enumerable.Range(0, rank).Where(axis => result.shape[axis] != input.shape[axis]).ToArray();
        var keptShape = kept.Select(axis => input.shape[axis]).ToArray();
        var keptStrides = kept.Select(axis => input.strides[axis]).ToArray();
        var reducedShape = reduced.Select(axis => input.shape[axis]).ToArray();
        var reducedStrides = reduced.Select(axis => input.strides[axis]).ToArray();
        var reducedLayout = new StridedLayout(reducedShape, reducedStrides);
        long outputs = ShapeMath.ElementCount(keptShape);
        CpuParallel.For(outputs, Threads, 64, (start, end) =>
        {
            for (long output = start; output < end; output++)
            {
                long offset = 0, remainder = output;
                for (int axis = keptShape.Length - 1; axis >= 0; axis--)
                {
                    offset += remainder % keptShape[axis] * keptStrides[axis];
                    remainder /= keptShape[axis];
                }
                T* block = source + offset;
                T total = T.Zero;
                long innerStride = reducedLayout.InnerStrides[0];
                for (long row = 0; row < reducedLayout.RowCount; row++)
                {
                    T* run = block + reducedLayout.RowOffset(0, row);
                    if (innerStride == 1)
                    {
                        total += TensorPrimitives.Sum(new ReadOnlySpan<T>(run, reducedLayout.InnerLength));
                    }
                    else
                    {
                        for (int i = 0; i < reducedLayout.InnerLength; i++)
                        {
                            total += run[i * innerStride];
                        }
                    }
                }
                target[output] = total;
            }
        });
    }
}
