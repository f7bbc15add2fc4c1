using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>Cross-entropy fused with log-softmax: no probability matrix is stored, only one log-sum-exp per row.</summary>
public sealed unsafe partial class CpuBackend
{
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor rowLoss, Tensor rowWeight, Tensor logSumExp)
    {
        ValidateCrossEntropy("cross-entropy", logits, targets);
        foreach (var (tensor, role) in new[] { (rowLoss, "row loss"), (rowWeight, "row weight"), (logSumExp, "log-sum-exp") })
        {
            Check.SameDType("cross-entropy", logits, tensor);
            Check.Shape("cross-entropy", tensor, [logits.Dim(0)], role);
        }
        DispatchFloat("cross-entropy", logits,
            () => CrossEntropyRun<float>(logits, targets, ignoreIndex, rowLoss, rowWeight, logSumExp),
            () => CrossEntropyRun<double>(logits, targets, ignoreIndex, rowLoss, rowWeight, logSumExp));
    }

    private static void ValidateCrossEntropy(string operation, Tensor logits, Tensor targets)
    {
        Check.Rank(operation, logits, 2);
        RequireContiguous(operation, logits, "logits");
        Check.SameDevice(operation, logits, targets);
        if (targets.DType != DType.Int32 || targets.Rank != 1 || targets.Dim(0) != logits.Dim(0) || !targets.IsContiguous)
        {
            throw new ArgumentException($"{operation}: targets must be contiguous int32 [{logits.Dim(0)}] for logits {logits.Describe()}, got {targets.Describe()}");
        }
    }

    private void CrossEntropyRun<T>(Tensor logits, Tensor targets, int ignoreIndex, Tensor rowLoss, Tensor rowWeight, Tensor logSumExp)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int vocabulary = logits.Dim(1);
        T* scores = Pointer<T>(logits), losses = Pointer<T>(rowLoss), weights = Pointer<T>(rowWeight), sums = Pointer<T>(logSumExp);
        int* labels = Pointer<int>(targets);
        CpuParallel.For(logits.Dim(0), Threads, Math.Max(1, 8192 / Math.Max(1, vocabulary)), (start, end) =>
        {
            var shifted = new T[vocabulary];
            for (long row = start; row < end; row++)
            {
                var rowScores = new ReadOnlySpan<T>(scores + row * vocabulary, vocabulary);
                T max = TensorPrimitives.Max(rowScores);
                TensorPrimitives.Subtract(rowScores, max, shifted);
                TensorPrimitives.Exp(shifted, shifted);
                T lse = max + T.Log(TensorPrimitives.Sum<T>(shifted));
                sums[row] = lse;
                int label = labels[row];
                if (label == ignoreIndex)
                {
                    losses[row] = T.Zero;
                    weights[row] = T.Zero;
                    continue;
                }
                if ((uint)label >= (uint)vocabulary)
                {
                    throw new ArgumentOutOfRangeException(nameof(targets), $"cross-entropy: target {label} at row {row} is outside the vocabulary [0, {vocabulary}) and is not the ignore index {ignoreIndex}");
                }
                losses[row] = lse - rowScores[label];
                weights[row] = T.One;
            }
        });
    }

    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor lossScale, Tensor logitsGrad)
    {
        ValidateCrossEntropy("cross-entropy backward", logits, targets);
        Check.SameShape("cross-entropy backward", logits, logitsGrad);
        RequireContiguous("cross-entropy backward", logitsGrad, "logits gradient");
        if (lossScale.ElementCount != 1)
        {
            throw new ArgumentException($"cross-entropy backward: the loss scale must have one element, got {lossScale.Describe()}");
        }
        DispatchFloat("cross-entropy backward", logits,
            () => CrossEntropyBackwardRun<float>(logits, targets, ignoreIndex, logSumExp, lossScale, logitsGrad),
            () => CrossEntropyBackwardRun<double>(logits, targets, ignoreIndex, logSumExp, lossScale, logitsGrad));
    }

    private void CrossEntropyBackwardRun<T>(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor lossScale, Tensor logitsGrad)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int vocabulary = logits.Dim(1);
        T* scores = Pointer<T>(logits), sums = Pointer<T>(logSumExp), gradients = Pointer<T>(logitsGrad);
        int* labels = Pointer<int>(targets);
        T scale = *Pointer<T>(lossScale);
        CpuParallel.For(logits.Dim(0), Threads, Math.Max(1, 8192 / Math.Max(1, vocabulary)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                var rowGradient = new Span<T>(gradients + row * vocabulary, vocabulary);
                int label = labels[row];
                if (label == ignoreIndex)
                {
                    rowGradient.Clear();
                    continue;
                }
                TensorPrimitives.Subtract(new ReadOnlySpan<T>(scores + row * vocabulary, vocabulary), sums[row], rowGradient);
                TensorPrimitives.Exp(rowGradient, rowGradient);
                TensorPrimitives.Multiply(rowGradient, scale, rowGradient);
                rowGradient[label] -= scale;
            }
        });
    }
}
