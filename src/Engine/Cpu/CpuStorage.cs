using System.Runtime.InteropServices;

namespace Engine.Cpu;

/// <summary>64-byte aligned native memory (one cache line, one AVX-512 vector), freed deterministically.</summary>
public sealed unsafe class CpuStorage : Storage
{
    internal CpuStorage(CpuBackend backend, long byteLength) : base(backend, byteLength)
    {
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(byteLength, 1), 64);
        backend.TrackAllocation(byteLength);
    }

    public byte* Pointer { get; private set; }

    protected override void Free()
    {
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
        ((CpuBackend)Backend).TrackAllocation(-ByteLength);
    }
}
