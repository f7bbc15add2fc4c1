using System.Numerics;
using System.Runtime.CompilerServices;

namespace Engine.Cpu;

/// <summary>
/// The CPU backend: native aligned memory, kernels on System.Numerics.Tensors and hand-written Vector512 code,
/// multi-threaded with <see cref="Threads"/> workers. Each operation lives in its own file under Cpu/Ops, forward and backward side by side.
/// </summary>
public sealed unsafe partial class CpuBackend : IBackend
{
    private long bytesInUse;
    private long peakBytes;

    /// <summary>A CPU backend for another device ordinal: a separate memory domain (tests use it to exercise cross-device checks).</summary>
    public CpuBackend(int ordinal)
    {
        Device = new Device(DeviceKind.Cpu, ordinal);
    }

    public static CpuBackend Instance { get; } = new(0);

    public Device Device { get; }

    /// <summary>Degree of parallelism of every CPU kernel (default: all cores).</summary>
    public int Threads { get; set; } = Environment.ProcessorCount;

    /// <summary>Freed blocks kept for reuse (not counted in <see cref="MemoryInUse"/>, which counts live tensors).</summary>
    public CpuMemoryPool Pool { get; } = new();

    public (long Current, long Peak) MemoryInUse => (Interlocked.Read(ref bytesInUse), Interlocked.Read(ref peakBytes));

    public void ResetPeakMemory() => Interlocked.Exchange(ref peakBytes, Interlocked.Read(ref bytesInUse));

    internal void TrackAllocation(long byteDelta)
    {
        long now = Interlocked.Add(ref bytesInUse, byteDelta);
        long peak;
        while (now > (peak = Interlocked.Read(ref peakBytes)) && Interlocked.CompareExchange(ref peakBytes, now, peak) != peak)
        {
        }
    }

    public Storage Allocate(long byteLength) => new CpuStorage(this, byteLength);

    public void Upload(ReadOnlySpan<byte> source, Storage destination, long destinationByteOffset)
    {
        var storage = AsCpu(destination);
        if (destinationByteOffset < 0 || destinationByteOffset + source.Length > storage.ByteLength)
        {
            throw new ArgumentOutOfRangeException(nameof(destinationByteOffset), $"upload of {source.Length} bytes at {destinationByteOffset} overruns a {storage.ByteLength}-byte storage");
        }
        source.CopyTo(new Span<byte>(storage.Pointer + destinationByteOffset, source.Length));
    }

    public void Download(Storage source, long sourceByteOffset, Span<byte> destination)
    {
        var storage = AsCpu(source);
        if (sourceByteOffset < 0 || sourceByteOffset + destination.Length > storage.ByteLength)
        {
            throw new ArgumentOutOfRangeException(nameof(sourceByteOffset), $"download of {destination.Length} bytes at {sourceByteOffset} overruns a {storage.ByteLength}-byte storage");
        }
        new ReadOnlySpan<byte>(storage.Pointer + sourceByteOffset, destination.Length).CopyTo(destination);
    }

    private static CpuStorage AsCpu(Storage storage) =>
        storage as CpuStorage ?? throw new ArgumentException($"the CPU backend was handed storage of device {storage.Device}");

    /// <summary>Pointer to a tensor's first element.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static T* Pointer<T>(Tensor tensor) where T : unmanaged => (T*)AsCpu(tensor.Storage).Pointer + tensor.Offset;

    internal static byte* BytePointer(Tensor tensor) => AsCpu(tensor.Storage).Pointer + tensor.Offset * tensor.DType.SizeInBytes();

    internal static Span<T> Span<T>(Tensor tensor) where T : unmanaged => new(Pointer<T>(tensor), checked((int)tensor.ElementCount));

    internal static void RequireContiguous(string operation, Tensor tensor, string role)
    {
        if (!tensor.IsContiguous)
        {
            throw new ArgumentException($"{operation}: {role} must be contiguous, got {tensor.Describe()} with strides [{string.Join(", ", tensor.Strides.ToArray())}]");
        }
    }

    /// <summary>Runs the float32 or float64 instantiation of a kernel; other dtypes are an error naming the operation.</summary>
    internal static void DispatchFloat(string operation, Tensor tensor, Action single, Action @double)
    {
        switch (tensor.DType)
        {
            case DType.Float32: single(); break;
            case DType.Float64: @double(); break;
            default: throw new ArgumentException($"{operation}: the CPU backend computes in float32 or float64, got {tensor.Describe()}; convert with To(DType.Float32)");
        }
    }

    internal static T FromDouble<T>(double value) where T : INumberBase<T> => T.CreateTruncating(value);

    /// <summary>A kernel's temporary buffer: a contiguous tensor from this backend's pool (and counted in <see cref="MemoryInUse"/>).</summary>
    internal Tensor Scratch(DType dtype, params int[] shape) =>
        new(Allocate(ShapeMath.ElementCount(shape) * dtype.SizeInBytes()), dtype, shape, ShapeMath.ContiguousStrides(shape), 0);
}
