using Engine.Cpu;

namespace Engine.Tests;

public class TensorTests
{
    [Fact]
    public void ViewsShareStorageWithoutCopies()
    {
        using var scope = new TensorScope();
        var data = Enumerable.Range(0, 24).Select(i => (float)i).ToArray();
        var tensor = Tensor.FromArray(data, 2, 3, 4);
        var transposed = tensor.Transpose(0, 2);
        var narrowed = tensor.Narrow(1, 1, 2);
        var reshaped = tensor.Reshape(6, -1);
        Assert.Same(tensor.Storage, transposed.Storage);
        Assert.Same(tensor.Storage, narrowed.Storage);
        Assert.Same(tensor.Storage, reshaped.Storage);
        Assert.False(transposed.IsContiguous);
        Assert.Equal([4, 3, 2], transposed.ShapeArray());
        // transposed[k, j, i] = tensor[i, j, k]
        var packed = transposed.Contiguous().ToArray<float>();
        Assert.Equal(data[1 * 12 + 2 * 4 + 3], packed[3 * 6 + 2 * 2 + 1]);
        Assert.Equal([4f, 5, 6, 7, 8, 9, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23], narrowed.ToArray<float>());
        Assert.Equal([6, 4], reshaped.ShapeArray());
    }

    [Fact]
    public void ExpandBroadcastsWithZeroStrides()
    {
        using var scope = new TensorScope();
        var row = Tensor.FromArray([1f, 2, 3], 1, 3);
        var expanded = row.Expand(2, 4, 3);
        Assert.Equal([0L, 0, 1], expanded.Strides.ToArray());
        Assert.Equal(Enumerable.Repeat(new[] { 1f, 2, 3 }, 8).SelectMany(x => x), expanded.ToArray<float>());
    }

    [Fact]
    public void PermuteUnsqueezeSqueezeRoundTrip()
    {
        using var scope = new TensorScope();
        var tensor = Tensor.Uniform([2, 3, 5], -1, 1, seed: 7);
        var permuted = tensor.Permute(2, 0, 1).Permute(1, 2, 0);
        Assert.Equal(tensor.ToArray<float>(), permuted.ToArray<float>());
        var unsqueezed = tensor.Unsqueeze(1);
        Assert.Equal([2, 1, 3, 5], unsqueezed.ShapeArray());
        Assert.Equal(tensor.ToArray<float>(), unsqueezed.Squeeze(1).ToArray<float>());
    }

    [Fact]
    public void DisposingTheLastReferenceFreesMemory()
    {
        // A private device ordinal, so other tests' allocations do not disturb the count.
        var backend = new CpuBackend(ordinal: 7);
        Backends.Register(backend);
        var device = new Device(DeviceKind.Cpu, 7);
        var tensor = Tensor.Zeros([1024], DType.Float32, device);
        var view = tensor.Narrow(0, 10, 100);
        Assert.Equal(4096, backend.MemoryInUse.Current);
        tensor.Dispose();
        Assert.Equal(4096, backend.MemoryInUse.Current);
        Assert.Equal(0f, view.ToArray<float>()[0]);
        view.Dispose();
        Assert.Equal(0, backend.MemoryInUse.Current);
        Assert.Throws<ObjectDisposedException>(() => view.ToArray<float>());
    }

    [Fact]
    public void ScopesDisposeWhatTheyOwnAndKeepWhatIsHandedOut()
    {
        Tensor kept, dropped;
        using (var outer = new TensorScope())
        {
            using (var inner = new TensorScope())
            {
                dropped = Tensor.Zeros([4]);
                kept = inner.Keep(Tensor.Zeros([4]));
            }
            Assert.True(dropped.IsDisposed);
            Assert.False(kept.IsDisposed);
        }
        Assert.True(kept.IsDisposed);
        using (TensorScope.Untracked())
        {
            kept = Tensor.Zeros([4]);
        }
        Assert.False(kept.IsDisposed);
        kept.Dispose();
    }

    [Theory]
    [InlineData(0x3F800000u, (ushort)0x3F80)] // 1.0
    [InlineData(0xC0000000u, (ushort)0xC000)] // -2.0
    [InlineData(0x7F800000u, (ushort)0x7F80)] // +infinity
    [InlineData(0x3F808000u, (ushort)0x3F80)] // exactly halfway between 0x3F80 and 0x3F81: ties to even (down)
    [InlineData(0x3F818000u, (ushort)0x3F82)] // halfway between 0x3F81 and 0x3F82: ties to even (up)
    [InlineData(0x3F808001u, (ushort)0x3F81)] // just above halfway: rounds up
    [InlineData(0x3F807FFFu, (ushort)0x3F80)] // just below halfway: rounds down
    [InlineData(0x7F7F7FFFu, (ushort)0x7F7F)] // near the largest finite bfloat16: stays finite
    [InlineData(0x7F7FFFFFu, (ushort)0x7F80)] // float32 max rounds past bfloat16's max to infinity, as PyTorch does
    public void BFloat16RoundsToNearestEven(uint floatBits, ushort expectedBits)
    {
        Assert.Equal(expectedBits, BFloat16.FromFloat(BitConverter.UInt32BitsToSingle(floatBits)).Bits);
    }

    [Fact]
    public void BFloat16KeepsNaN()
    {
        Assert.True(float.IsNaN(BFloat16.FromFloat(float.NaN).ToFloat()));
    }

    [Fact]
    public void BFloat16TensorRoundTripIsWithinHalfAnUlp()
    {
        using var scope = new TensorScope();
        var values = Tensor.Normal([1000], 0, 3, seed: 11);
        var roundTrip = values.To(DType.BFloat16).To(DType.Float32).ToArray<float>();
        var original = values.ToArray<float>();
        for (int i = 0; i < original.Length; i++)
        {
            // 8 significant bits: half an ulp is 2^-8 of the value's magnitude.
            Assert.True(Math.Abs(roundTrip[i] - original[i]) <= Math.Abs(original[i]) * (1.0 / 256), $"element {i}: {original[i]} -> {roundTrip[i]}");
        }
    }

    [Fact]
    public void IntegerDtypesConvertAndFloat64Converts()
    {
        using var scope = new TensorScope();
        var ints = Tensor.FromArray([1, -2, int.MaxValue], 3);
        Assert.Equal([1L, -2, int.MaxValue], ints.To(DType.Int64).ToArray<long>());
        var doubles = Tensor.FromArray([0.1, -1e10], 2);
        Assert.Equal([0.1f, -1e10f], doubles.To(DType.Float32).ToArray<float>());
    }

    [Fact]
    public void RandomFillsAreSeededAndHaveTheRequestedMoments()
    {
        using var scope = new TensorScope();
        var first = Tensor.Normal([20000], 1.5, 2.0, seed: 3).ToArray<float>();
        var again = Tensor.Normal([20000], 1.5, 2.0, seed: 3).ToArray<float>();
        var other = Tensor.Normal([20000], 1.5, 2.0, seed: 4).ToArray<float>();
        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
        double mean = first.Average(v => (double)v);
        double std = Math.Sqrt(first.Average(v => (v - mean) * (v - mean)));
        // Standard error of the mean is 2/sqrt(20000) ≈ 0.014; of the std ≈ 0.01. Five standard errors.
        Assert.InRange(mean, 1.5 - 0.07, 1.5 + 0.07);
        Assert.InRange(std, 2.0 - 0.05, 2.0 + 0.05);
        var uniform = Tensor.Uniform([20000], -3, 5, seed: 9).ToArray<float>();
        Assert.All(uniform, v => Assert.InRange(v, -3f, 5f));
        Assert.InRange(uniform.Average(v => (double)v), 1 - 0.12, 1 + 0.12);
    }

    [Fact]
    public void DropoutKeepsAboutOneMinusPAndScalesKeptValues()
    {
        using var scope = new TensorScope();
        var ones = Tensor.Full([50000], 1.0);
        var result = Tensor.Empty([50000]);
        CpuBackend.Instance.Dropout(ones, 0.25, 42, result);
        var values = result.ToArray<float>();
        Assert.All(values, v => Assert.True(v == 0 || Math.Abs(v - 1 / 0.75f) < 1e-6));
        double kept = values.Count(v => v != 0) / 50000.0;
        // Binomial standard deviation sqrt(p(1-p)/n) ≈ 0.002; allow five.
        Assert.InRange(kept, 0.75 - 0.01, 0.75 + 0.01);
    }
}

public class CpuMemoryPoolTests
{
    [Fact]
    public unsafe void FreedBlocksAreReusedUpToTheLimitAndTrimReleasesThem()
    {
        var pool = new Engine.Cpu.CpuMemoryPool { Limit = 1 << 20 };
        byte* first = pool.Rent(100_000);
        pool.Return(first, 100_000);
        Assert.Equal(Engine.Cpu.CpuMemoryPool.BlockSize(100_000), pool.CachedBytes);
        // Same rounded size: the cached block comes back.
        Assert.True(first == pool.Rent(100_001));
        Assert.Equal(0, pool.CachedBytes);
        byte* large = pool.Rent(2 << 20);
        pool.Return(large, 2 << 20);
        Assert.Equal(0, pool.CachedBytes); // over the limit: released, not cached
        pool.Return(first, 100_001);
        pool.Trim();
        Assert.Equal(0, pool.CachedBytes);
        Assert.Equal(0L, (long)first % 64);
    }
}
