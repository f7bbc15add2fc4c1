using System.Runtime.InteropServices;
using System.Text;

namespace Engine;

/// <summary>
/// An n-dimensional view (shape, element strides, element offset) over reference-counted <see cref="Storage"/>.
/// View operations share storage; <see cref="Dispose"/> releases this view's reference.
/// </summary>
public sealed class Tensor : IDisposable
{
    internal readonly int[] shape;
    internal readonly long[] strides;
    private bool disposed;

    internal Tensor(Storage storage, DType dtype, int[] shape, long[] strides, long offset)
    {
        Storage = storage;
        DType = dtype;
        this.shape = shape;
        this.strides = strides;
        Offset = offset;
        ElementCount = ShapeMath.ElementCount(shape);
        IsContiguous = ShapeMath.IsContiguous(shape, strides);
        TensorScope.Adopt(this);
    }

    public Storage Storage { get; }

    public DType DType { get; }

    /// <summary>Offset of the first element, in elements (not bytes).</summary>
    public long Offset { get; }

    public long ElementCount { get; }

    public bool IsContiguous { get; }

    public ReadOnlySpan<int> Shape => shape;

    public ReadOnlySpan<long> Strides => strides;

    public int Rank => shape.Length;

    public Device Device => Storage.Device;

    public IBackend Backend => Storage.Backend;

    public bool IsDisposed => disposed;

    internal TensorScope? OwnerScope { get; set; }

    /// <summary>The size of one axis; negative axes count from the end.</summary>
    public int Dim(int axis) => shape[NormalizeAxis(axis)];

    public long Stride(int axis) => strides[NormalizeAxis(axis)];

    public int[] ShapeArray() => (int[])shape.Clone();

    public string ShapeString => ShapeMath.Format(shape);

    /// <summary>"float32[2, 3] on cpu": how errors name a tensor.</summary>
    public string Describe() => $"{DType.ToString().ToLowerInvariant()}{ShapeString} on {Device}";

    public override string ToString() => Describe();

    public int NormalizeAxis(int axis)
    {
        int normalized = axis < 0 ? axis + shape.Length : axis;
        if ((uint)normalized >= (uint)shape.Length)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), $"axis {axis} is out of range for a tensor of rank {shape.Length} ({Describe()})");
        }
        return normalized;
    }

    // ---------------------------------------------------------------- factories

    public static Tensor Empty(ReadOnlySpan<int> shape, DType dtype = DType.Float32, Device? device = null)
    {
        var backend = Backends.For(device ?? Device.Cpu);
        var shapeArray = shape.ToArray();
        ShapeMath.Validate(shapeArray);
        long byteLength = ShapeMath.ElementCount(shapeArray) * dtype.SizeInBytes();
        var storage = backend.Allocate(byteLength);
        return new Tensor(storage, dtype, shapeArray, ShapeMath.ContiguousStrides(shapeArray), 0);
    }

    public static Tensor Full(ReadOnlySpan<int> shape, double value, DType dtype = DType.Float32, Device? device = null)
    {
        var tensor = Empty(shape, dtype, device);
        tensor.Backend.Fill(tensor, value);
        return tensor;
    }

    public static Tensor Zeros(ReadOnlySpan<int> shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 0, dtype, device);

    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full([], value, dtype, device);

    /// <summary>Copies host data into a new contiguous tensor.</summary>
    public static Tensor FromArray<T>(ReadOnlySpan<T> data, ReadOnlySpan<int> shape, Device? device = null) where T : unmanaged
    {
        var dtype = DTypeExtensions.Of<T>();
        long expected = ShapeMath.ElementCount(shape);
        if (expected != data.Length)
        {
            throw new ArgumentException($"{data.Length} host elements cannot fill a tensor of shape {ShapeMath.Format(shape)} ({expected} elements)");
        }
        var tensor = Empty(shape, dtype, device);
        tensor.Backend.Upload(MemoryMarshal.AsBytes(data), tensor.Storage, 0);
        return tensor;
    }

    public static Tensor FromArray<T>(T[] data, params int[] shape) where T : unmanaged => FromArray<T>(data.AsSpan(), shape);

    /// <summary>Uniform in [low, high) from a counter-based generator: the same seed gives the same values on every backend.</summary>
    public static Tensor Uniform(ReadOnlySpan<int> shape, double low, double high, ulong seed, DType dtype = DType.Float32, Device? device = null)
    {
        var tensor = Empty(shape, dtype, device);
        tensor.Backend.FillRandom(tensor, RandomDistribution.Uniform, low, high, seed);
        return tensor;
    }

    public static Tensor Normal(ReadOnlySpan<int> shape, double mean, double std, ulong seed, DType dtype = DType.Float32, Device? device = null)
    {
        var tensor = Empty(shape, dtype, device);
        tensor.Backend.FillRandom(tensor, RandomDistribution.Normal, mean, std, seed);
        return tensor;
    }

    // ---------------------------------------------------------------- host access

    public T[] ToArray<T>() where T : unmanaged
    {
        ThrowIfDisposed();
        var dtype = DTypeExtensions.Of<T>();
        if (dtype != DType)
        {
            throw new InvalidOperationException($"cannot read {Describe()} as {dtype.ToString().ToLowerInvariant()}; convert with To(DType.{dtype}) first");
        }
        var result = new T[ElementCount];
        using var source = Contiguous();
        source.Backend.Download(source.Storage, source.Offset * DType.SizeInBytes(), MemoryMarshal.AsBytes(result.AsSpan()));
        return result;
    }

    /// <summary>The single value of a one-element tensor, converted to double.</summary>
    public double Item()
    {
        if (ElementCount != 1)
        {
            throw new InvalidOperationException($"Item() needs a one-element tensor, got {Describe()}");
        }
        return DType switch
        {
            DType.Float32 => ToArray<float>()[0],
            DType.Float64 => ToArray<double>()[0],
            DType.BFloat16 => ToArray<BFloat16>()[0].ToFloat(),
            DType.Int32 => ToArray<int>()[0],
            DType.Int64 => ToArray<long>()[0],
            _ => throw new NotSupportedException(DType.ToString()),
        };
    }

    // ---------------------------------------------------------------- views (no copies)

    /// <summary>Another reference to the same view; dispose it independently.</summary>
    public Tensor Share()
    {
        ThrowIfDisposed();
        Storage.Retain();
        return new Tensor(Storage, DType, shape, strides, Offset);
    }

    private Tensor MakeView(int[] newShape, long[] newStrides, long newOffset)
    {
        ThrowIfDisposed();
        Storage.Retain();
        return new Tensor(Storage, DType, newShape, newStrides, newOffset);
    }

    /// <summary>Reinterprets contiguous data with a new shape (one axis may be -1). Non-contiguous input is copied first.</summary>
    public Tensor Reshape(params int[] newShape)
    {
        var resolved = ShapeMath.ResolveReshape(shape, newShape);
        if (IsContiguous)
        {
            return MakeView(resolved, ShapeMath.ContiguousStrides(resolved), Offset);
        }
        using var packed = Contiguous();
        return packed.MakeView(resolved, ShapeMath.ContiguousStrides(resolved), packed.Offset);
    }

    public Tensor Transpose(int axisA, int axisB)
    {
        int a = NormalizeAxis(axisA), b = NormalizeAxis(axisB);
        var newShape = ShapeArray();
        var newStrides = (long[])strides.Clone();
        (newShape[a], newShape[b]) = (newShape[b], newShape[a]);
        (newStrides[a], newStrides[b]) = (newStrides[b], newStrides[a]);
        return MakeView(newShape, newStrides, Offset);
    }

    public Tensor Permute(params int[] axes)
    {
        if (axes.Length != Rank)
        {
            throw new ArgumentException($"permute needs {Rank} axes for {Describe()}, got [{string.Join(", ", axes)}]");
        }
        var newShape = new int[Rank];
        var newStrides = new long[Rank];
        var seen = new bool[Rank];
        for (int i = 0; i < Rank; i++)
        {
            int axis = NormalizeAxis(axes[i]);
            if (seen[axis])
            {
                throw new ArgumentException($"permute axes [{string.Join(", ", axes)}] repeat axis {axis} of {Describe()}");
            }
            seen[axis] = true;
            newShape[i] = shape[axis];
            newStrides[i] = strides[axis];
        }
        return MakeView(newShape, newStrides, Offset);
    }

    /// <summary>The sub-range [start, start + length) of one axis.</summary>
    public Tensor Narrow(int axis, int start, int length)
    {
        int a = NormalizeAxis(axis);
        if (start < 0 || length < 0 || start + length > shape[a])
        {
            throw new ArgumentOutOfRangeException(nameof(start), $"narrow [{start}, {start + length}) is outside axis {a} of size {shape[a]} in {Describe()}");
        }
        var newShape = ShapeArray();
        newShape[a] = length;
        return MakeView(newShape, (long[])strides.Clone(), Offset + start * strides[a]);
    }

    /// <summary>Broadcasts size-1 axes (and new leading axes) to the given shape with stride 0.</summary>
    public Tensor Expand(params int[] targetShape)
    {
        if (targetShape.Length < Rank)
        {
            throw new ArgumentException($"cannot expand {Describe()} to the lower-rank shape {ShapeMath.Format(targetShape)}");
        }
        int lead = targetShape.Length - Rank;
        var newStrides = new long[targetShape.Length];
        for (int i = 0; i < targetShape.Length; i++)
        {
            if (i < lead)
            {
                newStrides[i] = 0;
                continue;
            }
            int sourceSize = shape[i - lead];
            if (sourceSize == targetShape[i])
            {
                newStrides[i] = strides[i - lead];
            }
            else if (sourceSize == 1)
            {
                newStrides[i] = 0;
            }
            else
            {
                throw new ArgumentException($"cannot expand {Describe()} to {ShapeMath.Format(targetShape)}: axis {i - lead} has size {sourceSize}, not 1 or {targetShape[i]}");
            }
        }
        return MakeView((int[])targetShape.Clone(), newStrides, Offset);
    }

    public Tensor Unsqueeze(int axis)
    {
        int a = axis < 0 ? axis + Rank + 1 : axis;
        if ((uint)a > (uint)Rank)
        {
            throw new ArgumentOutOfRangeException(nameof(axis), $"unsqueeze axis {axis} is out of range for {Describe()}");
        }
        var newShape = new List<int>(shape);
        var newStrides = new List<long>(strides);
        newShape.Insert(a, 1);
        newStrides.Insert(a, a < Rank ? strides[a] * shape[a] : 1);
        return MakeView([.. newShape], [.. newStrides], Offset);
    }

    public Tensor Squeeze(int axis)
    {
        int a = NormalizeAxis(axis);
        if (shape[a] != 1)
        {
            throw new ArgumentException($"cannot squeeze axis {a} of size {shape[a]} in {Describe()}");
        }
        var newShape = new List<int>(shape);
        var newStrides = new List<long>(strides);
        newShape.RemoveAt(a);
        newStrides.RemoveAt(a);
        return MakeView([.. newShape], [.. newStrides], Offset);
    }

    // ---------------------------------------------------------------- copies

    /// <summary>This view if already contiguous (a shared reference), else a packed copy.</summary>
    public Tensor Contiguous() => IsContiguous ? Share() : Clone();

    /// <summary>A packed copy with its own storage.</summary>
    public Tensor Clone()
    {
        ThrowIfDisposed();
        var copy = Empty(shape, DType, Device);
        Backend.Copy(this, copy);
        return copy;
    }

    /// <summary>A copy converted to another dtype (float32/float64/bfloat16 among themselves; integers among themselves).</summary>
    public Tensor To(DType dtype)
    {
        if (dtype == DType)
        {
            return Share();
        }
        var converted = Empty(shape, dtype, Device);
        Backend.Copy(this, converted);
        return converted;
    }

    /// <summary>A copy on another device (through the host when the two backends differ).</summary>
    public Tensor To(Device device)
    {
        if (device == Device)
        {
            return Share();
        }
        using var packed = Contiguous();
        var bytes = new byte[packed.ElementCount * DType.SizeInBytes()];
        packed.Backend.Download(packed.Storage, packed.Offset * DType.SizeInBytes(), bytes);
        var moved = Empty(shape, DType, device);
        moved.Backend.Upload(bytes, moved.Storage, 0);
        return moved;
    }

    /// <summary>Copies the values of <paramref name="source"/> (same shape, any layout, convertible dtype) into this view.</summary>
    public void CopyFrom(Tensor source)
    {
        ThrowIfDisposed();
        Check.SameDevice("copy", this, source);
        Check.SameShape("copy", this, source);
        Backend.Copy(source, this);
    }

    /// <summary>this += scale · other, in place (same shape; other may be any layout).</summary>
    public void AddInPlace(Tensor other, double scale = 1)
    {
        ThrowIfDisposed();
        Check.Compatible("add in place", this, other);
        Check.SameShape("add in place", this, other);
        using var scaled = Empty(shape, DType, Device);
        using (var packed = other.Contiguous())
        {
            Backend.Affine(packed, scale, 0, scaled);
        }
        Backend.Binary(BinaryOp.Add, this, scaled, this);
    }

    internal void ThrowIfDisposed()
    {
        if (disposed || Storage.IsFreed)
        {
            throw new ObjectDisposedException(nameof(Tensor), $"{DType.ToString().ToLowerInvariant()}{ShapeString} was already disposed");
        }
    }

    public void Dispose()
    {
        if (!disposed)
        {
            disposed = true;
            Storage.Release();
            GC.SuppressFinalize(this);
        }
    }

    /// <summary>Safety net for tensors created outside any scope and never disposed: their memory is returned eventually.</summary>
    ~Tensor()
    {
        if (!disposed)
        {
            disposed = true;
            Storage.Release();
        }
    }

    /// <summary>A short printable form of the values, for debugging.</summary>
    public string Format(int maxElements = 16)
    {
        using var asDouble = DType == DType.Float64 ? Share() : DType.IsFloatingPoint() ? To(DType.Float64) : null;
        var builder = new StringBuilder(Describe()).Append(' ');
        if (asDouble is null)
        {
            builder.Append(DType == DType.Int32 ? string.Join(", ", ToArray<int>().Take(maxElements)) : string.Join(", ", ToArray<long>().Take(maxElements)));
        }
        else
        {
            builder.Append(string.Join(", ", asDouble.ToArray<double>().Take(maxElements).Select(v => v.ToString("G6"))));
        }
        if (ElementCount > maxElements)
        {
            builder.Append(", ...");
        }
        return builder.ToString();
    }
}
