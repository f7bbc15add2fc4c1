using Engine.Cpu.Kernels;

namespace Engine.Cpu;

/// <summary>Matrix products through the packed SGEMM/DGEMM in Kernels/Gemm.cs; transposed views are read in place.</summary>
public sealed unsafe partial class CpuBackend
{
    public void MatMul(Tensor left, Tensor right, Tensor result, double alpha, double beta)
    {
        Check.Compatible("matmul", left, right);
        Check.Compatible("matmul", left, result);
        if (left.Rank != right.Rank || left.Rank != result.Rank || left.Rank is not (2 or 3))
        {
            throw new ArgumentException($"matmul: operands must all be rank 2 or all rank 3, got {left.Describe()}, {right.Describe()} -> {result.Describe()}");
        }
        int m = left.Dim(-2), k = left.Dim(-1), n = right.Dim(-1);
        int batch = left.Rank == 3 ? result.Dim(0) : 1;
        if (right.Dim(-2) != k || result.Dim(-2) != m || result.Dim(-1) != n
            || (left.Rank == 3 && (left.Dim(0) != batch || right.Dim(0) != batch)))
        {
            throw new ArgumentException($"matmul: shapes do not match: {left.Describe()} x {right.Describe()} -> {result.Describe()}");
        }
        var (transLeft, leadingLeft) = MatrixLayout(left, "left operand");
        var (transRight, leadingRight) = MatrixLayout(right, "right operand");
        var (transResult, leadingResult) = MatrixLayout(result, "result");
        if (transResult)
        {
            throw new ArgumentException($"matmul: the result must have unit stride in its last axis, got {result.Describe()} with strides [{string.Join(", ", result.Strides.ToArray())}]");
        }
        long strideLeft = left.Rank == 3 ? left.Stride(0) : 0, strideRight = right.Rank == 3 ? right.Stride(0) : 0, strideResult = result.Rank == 3 ? result.Stride(0) : 0;
        if (left.DType == DType.Float32)
        {
            Gemm.SgemmStridedBatched(transLeft, transRight, m, n, k, (float)alpha, Pointer<float>(left), leadingLeft, strideLeft,
                Pointer<float>(right), leadingRight, strideRight, (float)beta, Pointer<float>(result), leadingResult, strideResult, batch, Threads);
        }
        else if (left.DType == DType.Float64)
        {
            Gemm.DgemmStridedBatched(transLeft, transRight, m, n, k, alpha, Pointer<double>(left), leadingLeft, strideLeft,
                Pointer<double>(right), leadingRight, strideRight, beta, Pointer<double>(result), leadingResult, strideResult, batch, Threads);
        }
        else
        {
            throw new ArgumentException($"matmul: the CPU backend multiplies float32 or float64, got {left.Describe()}");
        }
    }

    /// <summary>Whether a matrix view is stored transposed, and its leading dimension, from the strides of its last two axes.</summary>
    private static (bool Transposed, long LeadingDimension) MatrixLayout(Tensor matrix, string role)
    {
        int rows = matrix.Dim(-2), columns = matrix.Dim(-1);
        long rowStride = matrix.Stride(-2), columnStride = matrix.Stride(-1);
        if ((columnStride == 1 || columns == 1) && (rows == 1 || rowStride >= columns))
        {
            return (false, rows == 1 ? Math.Max(1, columns) : rowStride);
        }
        if ((rowStride == 1 || rows == 1) && (columns == 1 || columnStride >= rows))
        {
            return (true, columns == 1 ? Math.Max(1, rows) : columnStride);
        }
        throw new ArgumentException($"matmul: the {role} {matrix.Describe()} with strides [{string.Join(", ", matrix.Strides.ToArray())}] has no unit-stride axis; make it Contiguous() first");
    }
}
