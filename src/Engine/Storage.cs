namespace Engine;

/// <summary>
/// A reference-counted block of memory on one device. Every <see cref="Tensor"/> holds one reference, so views share
/// storage without copies and the memory is freed deterministically when the last tensor using it is disposed.
/// </summary>
public abstract class Storage
{
    private int referenceCount = 1;

    protected Storage(IBackend backend, long byteLength)
    {
        Backend = backend;
        ByteLength = byteLength;
    }

    public IBackend Backend { get; }

    public Device Device => Backend.Device;

    public long ByteLength { get; }

    public bool IsFreed => Volatile.Read(ref referenceCount) <= 0;

    internal void Retain()
    {
        if (Interlocked.Increment(ref referenceCount) <= 1)
        {
            throw new ObjectDisposedException(nameof(Storage), "cannot share a tensor whose storage was already freed");
        }
    }

    internal void Release()
    {
        if (Interlocked.Decrement(ref referenceCount) == 0)
        {
            Free();
        }
    }

    /// <summary>Returns the memory to the backend; called once, when the last reference goes.</summary>
    protected abstract void Free();
}
