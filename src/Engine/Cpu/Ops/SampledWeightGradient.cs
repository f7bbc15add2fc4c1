using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics.X86;
using Engine.Cpu.Kernels;

namespace Engine.Cpu;

/// <summary>
/// SpIEL's weight gradient at its k active entries (an SDDMM): k dot products over the tokens instead of the dense
/// gᵀx GEMM. outputGrad and input are first transposed into [out, T] and [in, T] scratch buffers (T·(out + in) elements,
/// far fewer than out·in), so each dot product reads two contiguous rows with SIMD; the products run grouped by the
/// larger operand's row, threaded over the entries.
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
        int entryCount = indices.Dim(0);
        using var gradientColumns = Scratch(outputGrad.DType, outFeatures, tokenCount);
        using var inputColumns = Scratch(input.DType, inFeatures, tokenCount);
        T* gradientByRow = Pointer<T>(gradientColumns), inputByColumn = Pointer<T>(inputColumns);
        Transpose(Pointer<T>(outputGrad), tokenCount, outFeatures, gradientByRow);
        Transpose(Pointer<T>(input), tokenCount, inFeatures, inputByColumn);
        int* flatIndices = Pointer<int>(indices);
        // The entries grouped by the row of the larger transposed operand (a counting sort, O(k + out + in)): each of
        // its rows is then read once, in order, and reused from L1 by consecutive dot products, while the smaller
        // operand, read at random, is the one more likely to stay in cache.
        bool byColumn = inFeatures > outFeatures;
        int groupCount = byColumn ? inFeatures : outFeatures;
        int GroupOf(int flatIndex) => byColumn ? flatIndex % inFeatures : flatIndex / inFeatures;
        using var orderBuffer = Scratch(DType.Int32, entryCount);
        int* order = Pointer<int>(orderBuffer);
        var groupStarts = new int[groupCount + 1];
        for (int entry = 0; entry < entryCount; entry++)
        {
            groupStarts[GroupOf(flatIndices[entry]) + 1]++;
        }
        for (int group = 0; group < groupCount; group++)
        {
            groupStarts[group + 1] += groupStarts[group];
        }
        for (int entry = 0; entry < entryCount; entry++)
        {
            order[groupStarts[GroupOf(flatIndices[entry])]++] = entry;
        }
        T* results = Pointer<T>(result);
        T scale = FromDouble<T>(beta);
        CpuParallel.For(entryCount, Threads, Math.Max(1, 32768 / Math.Max(1, tokenCount)), (start, end) =>
        {
            for (long position = start; position < end; position++)
            {
                int entry = order[position];
                int row = flatIndices[entry] / inFeatures, column = flatIndices[entry] - row * inFeatures;
                T dot = TensorPrimitives.Dot(new ReadOnlySpan<T>(gradientByRow + (long)row * tokenCount, tokenCount),
                    new ReadOnlySpan<T>(inputByColumn + (long)column * tokenCount, tokenCount));
                // beta = 0 must not read result: it may hold garbage (NaN · 0 is NaN).
                results[entry] = beta == 0 ? dot : scale * results[entry] + dot;
            }
        });
    }

    /// <summary>
    /// destination [columns, rows] = sourceᵀ for a row-major source [rows, columns], in 16×16 tiles: through registers for
    /// float with AVX-512, element by element otherwise (and at the edges). A tile reads each source line once however the
    /// power-of-two row strides of weight-shaped operands alias in L1. Threaded over tiles of destination rows.
    /// </summary>
    private void Transpose<T>(T* source, int rows, int columns, T* destination) where T : unmanaged
    {
        const int tile = 16;
        bool throughRegisters = typeof(T) == typeof(float) && Avx512F.IsSupported;
        long columnTiles = (columns + tile - 1) / tile;
        CpuParallel.For(columnTiles, Threads, Math.Max(1, 16384 / Math.Max(1, (long)rows * tile)), (start, end) =>
        {
            for (long columnTile = start; columnTile < end; columnTile++)
            {
                int firstColumn = (int)columnTile * tile, width = Math.Min(tile, columns - firstColumn);
                for (int firstRow = 0; firstRow < rows; firstRow += tile)
                {
                    int height = Math.Min(tile, rows - firstRow);
                    T* from = source + (long)firstRow * columns + firstColumn;
                    T* to = destination + (long)firstColumn * rows + firstRow;
                    if (throughRegisters && width == tile && height == tile)
                    {
                        BlockTranspose.Float16x16((float*)from, columns, (float*)to, rows, 1);
                        continue;
                    }
                    for (int column = 0; column < width; column++)
                    {
                        for (int row = 0; row < height; row++)
                        {
                            to[(long)column * rows + row] = from[(long)row * columns + column];
                        }
                    }
                }
            }
        });
    }
}
