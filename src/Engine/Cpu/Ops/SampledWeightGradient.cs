using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Cpu;

/// <summary>
/// SpIEL's weight gradient at its k active entries (an SDDMM): k dot products over the tokens instead of the dense
/// gᵀx GEMM. outputGrad and input are first transposed into [out, T] and [in, T] scratch buffers (T·(out + in) elements,
/// far fewer than out·in), so each dot product reads two contiguous rows with SIMD; the products are threaded over the indices.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    public void SampledWeightGradient(Tensor outputGrad, Tensor input, Tensor indices, Tensor result, double beta)
    {
        const string name = "sampled weight gradient";
        Check.Compatible(name, outputGrad, input);
        Check.Compatible(name, outputGrad, result);
        Check.SameDevice(name, outputGrad, indices);
        if (outputGrad.Rank != 2 || input.Rank != 2 || outputGrad.Dim(0) != input.Dim(0))
        {
            throw new ArgumentException($"{name}: output gradient {outputGrad.Describe()} [T, out] and input {input.Describe()} [T, in] must be 2-D with the same token count T");
        }
        if (indices.DType != DType.Int32 || indices.Rank != 1 || !result.Shape.SequenceEqual(indices.Shape))
        {
            throw new ArgumentException($"{name}: indices {indices.Describe()} must be int32 [k] and result {result.Describe()} [k]");
        }
        RequireContiguous(name, outputGrad, "output gradient");
        RequireContiguous(name, input, "input");
        RequireContiguous(name, indices, "indices");
        RequireContiguous(name, result, "result");
        RequireIndicesInRange(name, indices, (long)outputGrad.Dim(1) * input.Dim(1));
        DispatchFloat(name, result,
            () => SampledWeightGradientRun<float>(outputGrad, input, indices, result, beta),
            () => SampledWeightGradientRun<double>(outputGrad, input, indices, result, beta));
    }

    private void SampledWeightGradientRun<T>(Tensor outputGrad, Tensor input, Tensor indices, Tensor result, double beta)
        where T : unmanaged, IBinaryFloatingPointIeee754<T>
    {
        int tokenCount = outputGrad.Dim(0), outFeatures = outputGrad.Dim(1), inFeatures = input.Dim(1);
        using var gradientColumns = Scratch(outputGrad.DType, outFeatures, tokenCount);
        using var inputColumns = Scratch(input.DType, inFeatures, tokenCount);
        T* gradientByRow = Pointer<T>(gradientColumns), inputByColumn = Pointer<T>(inputColumns);
        Transpose(Pointer<T>(outputGrad), tokenCount, outFeatures, gradientByRow);
        Transpose(Pointer<T>(input), tokenCount, inFeatures, inputByColumn);
        int* flatIndices = Pointer<int>(indices);
        T* results = Pointer<T>(result);
        T scale = FromDouble<T>(beta);
        CpuParallel.For(indices.ElementCount, Threads, Math.Max(1, 32768 / Math.Max(1, tokenCount)), (start, end) =>
        {
            for (long entry = start; entry < end; entry++)
            {
                int row = flatIndices[entry] / inFeatures, column = flatIndices[entry] - row * inFeatures;
                T dot = TensorPrimitives.Dot(new ReadOnlySpan<T>(gradientByRow + (long)row * tokenCount, tokenCount),
                    new ReadOnlySpan<T>(inputByColumn + (long)column * tokenCount, tokenCount));
                // beta = 0 must not read result: it may hold garbage (NaN · 0 is NaN).
                results[entry] = beta == 0 ? dot : scale * results[entry] + dot;
            }
        });
    }

    /// <summary>
    /// destination [columns, rows] = sourceᵀ for a row-major source [rows, columns], in square tiles that stay in L1 so
    /// both the strided reads and the writes reuse every cache line they touch; threaded over tiles of destination rows.
    /// </summary>
    private void Transpose<T>(T* source, int rows, int columns, T* destination) where T : unmanaged
    {
        const int tile = 32;
        long columnTiles = (columns + tile - 1) / tile;
        CpuParallel.For(columnTiles, Threads, Math.Max(1, 16384 / Math.Max(1, (long)rows * tile)), (start, end) =>
        {
            for (long columnTile = start; columnTile < end; columnTile++)
            {
                int firstColumn = (int)columnTile * tile, endColumn = Math.Min(columns, firstColumn + tile);
                for (int firstRow = 0; firstRow < rows; firstRow += tile)
                {
                    int endRow = Math.Min(rows, firstRow + tile);
                    for (int column = firstColumn; column < endColumn; column++)
                    {
                        T* target = destination + (long)column * rows;
                        for (int row = firstRow; row < endRow; row++)
                        {
                            target[row] = source[(long)row * columns + column];
                        }
                    }
                }
            }
        });
    }
}
