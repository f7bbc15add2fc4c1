namespace Engine.Cpu;

/// <summary>64-byte aligned native memory (one cache line, one AVX-512 vector) from the backend's pool, returned to it deterministically.</summary>
public sealed unsafe class CpuStorage : Storage
{
    internal CpuStorage(CpuBackend backend, long byteLength) : base(backend, byteLength)
    {
        Pointer = backend.Pool.Rent(byteLength);
        backend.TrackAllocation(byteLength);
    }

    public byte* Pointer { get; private set; }

    protected override void Free()
    {
        ((CpuBackend)Backend).Pool.Return(Pointer, ByteLength);
        Pointer = null;
        ((CpuBackend)Backend).TrackAllocation(-ByteLength);
    }
}
