namespace Engine.Autograd.Functions;

/// <summary>
/// Matrix product. [..., m, k] @ [k, n] folds the leading axes into m (one GEMM); [..., m, k] @ [..., k, n] with equal
/// leading axes is a strided-batched GEMM. Backward: dA = g Bᵀ, dB = Aᵀ g, with transposes read in place.
/// </summary>
internal sealed class MatMulFunction : Function
{
    private Tensor? left, right;
    private int[] leftShape = [], rightShape = [];

    public override string Name => "MatMul";

    public static Variable Apply(Variable a, Variable b)
    {
        Check.Compatible("matmul", a.Data, b.Data);
        if (a.Rank < 2 || b.Rank < 2 || a.Dim(-1) != b.Dim(-2) || (b.Rank > 2 && !a.Shape[..^2].SequenceEqual(b.Shape[..^2])))
        {
            throw new ArgumentException($"matmul: cannot multiply {a.Data.Describe()} by {b.Data.Describe()} (need [..., m, k] x [k, n] or equal leading axes)");
        }
        var function = new MatMulFunction { leftShape = a.Data.ShapeArray(), rightShape = b.Data.ShapeArray() };
        using var left = AsMatrices(a.Data, b.Rank == 2);
        using var right = AsMatrices(b.Data, false);
        var outputShape = a.Data.ShapeArray();
        outputShape[^1] = b.Dim(-1);
        var result = Tensor.Empty(outputShape, a.DType, a.Device);
        using (var resultMatrices = AsMatrices(result, b.Rank == 2))
        {
            result.Backend.MatMul(left, right, resultMatrices, 1, 0);
        }
        function.left = function.Save(left);
        function.right = function.Save(right);
        return function.Finish(result, a, b);
    }

    /// <summary>Rank-2 view, or rank-3 with the leading axes folded into a batch axis; folds rows when <paramref name="foldRows"/>.</summary>
    private static Tensor AsMatrices(Tensor tensor, bool foldRows)
    {
        if (tensor.Rank == 2)
        {
            return tensor.Share();
        }
        if (foldRows)
        {
            return tensor.Reshape(-1, tensor.Dim(-1));
        }
        if (tensor.Rank == 3)
        {
            return tensor.Share();
        }
        return tensor.Reshape(-1, tensor.Dim(-2), tensor.Dim(-1));
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = AsMatrices(outputGrad.Contiguous(), left!.Rank == 2 && right!.Rank == 2 && leftShape.Length > 2);
        var backend = gradient.Backend;
        Tensor? leftGrad = null, rightGrad = null;
        if (needsGrad[0])
        {
            using var rightTransposed = right!.Transpose(-1, -2);
            leftGrad = GradientMath.EmptyLike(left!);
            backend.MatMul(gradient, rightTransposed, leftGrad, 1, 0);
        }
        if (needsGrad[1])
        {
            using var leftTransposed = left!.Transpose(-1, -2);
            rightGrad = GradientMath.EmptyLike(right!);
            backend.MatMul(leftTransposed, gradient, rightGrad, 1, 0);
        }
        return [leftGrad?.Reshape(leftShape), rightGrad?.Reshape(rightShape)];
    }
}
