using System.Runtime.CompilerServices;

namespace Engine.Cpu;

/// <summary>Copy with layout and dtype conversion, fill, and seeded random fill.</summary>
public sealed unsafe partial class CpuBackend
{
    public void Copy(Tensor source, Tensor destination)
    {
        Check.SameShape("copy", source, destination);
        bool floats = source.DType.IsFloatingPoint() && destination.DType.IsFloatingPoint();
        bool integers = source.DType.IsInteger() && destination.DType.IsInteger();
        if (!floats && !integers)
        {
            throw new ArgumentException($"copy: cannot convert {source.Describe()} to {destination.Describe()} (float and integer dtypes do not mix)");
        }
        var layout = new StridedLayout(source.Shape, source.strides, destination.strides);
        switch (source.DType, destination.DType)
        {
            case (DType.Float32, DType.Float32): CopyRows<float, float, Identity<float>>(source, destination, layout); break;
            case (DType.Float64, DType.Float64): CopyRows<double, double, Identity<double>>(source, destination, layout); break;
            case (DType.BFloat16, DType.BFloat16): CopyRows<ushort, ushort, Identity<ushort>>(source, destination, layout); break;
            case (DType.Int32, DType.Int32): CopyRows<int, int, Identity<int>>(source, destination, layout); break;
            case (DType.Int64, DType.Int64): CopyRows<long, long, Identity<long>>(source, destination, layout); break;
            case (DType.Float32, DType.Float64): CopyRows<float, double, FloatToDouble>(source, destination, layout); break;
            case (DType.Float64, DType.Float32): CopyRows<double, float, DoubleToFloat>(source, destination, layout); break;
            case (DType.Float32, DType.BFloat16): CopyRows<float, BFloat16, FloatToBFloat16>(source, destination, layout); break;
            case (DType.BFloat16, DType.Float32): CopyRows<BFloat16, float, BFloat16ToFloat>(source, destination, layout); break;
            case (DType.Float64, DType.BFloat16): CopyRows<double, BFloat16, DoubleToBFloat16>(source, destination, layout); break;
            case (DType.BFloat16, DType.Float64): CopyRows<BFloat16, double, BFloat16ToDouble>(source, destination, layout); break;
            case (DType.Int32, DType.Int64): CopyRows<int, long, IntToLong>(source, destination, layout); break;
            case (DType.Int64, DType.Int32): CopyRows<long, int, LongToInt>(source, destination, layout); break;
            default: throw new ArgumentException($"copy: no conversion from {source.Describe()} to {destination.Describe()}");
        }
    }

    private void CopyRows<TFrom, TTo, TConvert>(Tensor source, Tensor destination, StridedLayout layout)
        where TFrom : unmanaged where TTo : unmanaged where TConvert : IElementConverter<TFrom, TTo>
    {
        TFrom* sourceBase = Pointer<TFrom>(source);
        TTo* destinationBase = Pointer<TTo>(destination);
        long sourceStride = layout.InnerStrides[0], destinationStride = layout.InnerStrides[1];
        int inner = layout.InnerLength;
        CpuParallel.For(layout.RowCount, Threads, Math.Max(1, 65536 / Math.Max(1, inner)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                TFrom* from = sourceBase + layout.RowOffset(0, row);
                TTo* to = destinationBase + layout.RowOffset(1, row);
                if (typeof(TFrom) == typeof(TTo) && sourceStride == 1 && destinationStride == 1)
                {
                    Buffer.MemoryCopy(from, to, (long)inner * sizeof(TTo), (long)inner * sizeof(TTo));
                    continue;
                }
                for (int i = 0; i < inner; i++)
                {
                    to[i * destinationStride] = TConvert.Convert(from[i * sourceStride]);
                }
            }
        });
    }

    public void Fill(Tensor destination, double value)
    {
        switch (destination.DType)
        {
            case DType.Float32: FillWith(destination, (float)value); break;
            case DType.Float64: FillWith(destination, value); break;
            case DType.BFloat16: FillWith(destination, BFloat16.FromFloat((float)value)); break;
            case DType.Int32: FillWith(destination, checked((int)value)); break;
            case DType.Int64: FillWith(destination, checked((long)value)); break;
            default: throw new ArgumentException($"fill: unsupported {destination.Describe()}");
        }
    }

    private void FillWith<T>(Tensor destination, T value) where T : unmanaged
    {
        var layout = new StridedLayout(destination.Shape, destination.strides);
        T* origin = Pointer<T>(destination);
        long stride = layout.InnerStrides[0];
        int inner = layout.InnerLength;
        CpuParallel.For(layout.RowCount, Threads, Math.Max(1, 65536 / Math.Max(1, inner)), (start, end) =>
        {
            for (long row = start; row < end; row++)
            {
                T* run = origin + layout.RowOffset(0, row);
                if (stride == 1)
                {
                    new Span<T>(run, inner).Fill(value);
                }
                else
                {
                    for (int i = 0; i < inner; i++)
                    {
                        run[i * stride] = value;
                    }
                }
            }
        });
    }

    public void FillRandom(Tensor destination, RandomDistribution distribution, double first, double second, ulong seed)
    {
        RequireContiguous("random fill", destination, "destination");
        switch (destination.DType)
        {
            case DType.Float32: FillRandomWith<float, DoubleToFloat>(destination, distribution, first, second, seed); break;
            case DType.Float64: FillRandomWith<double, Identity<double>>(destination, distribution, first, second, seed); break;
            case DType.BFloat16: FillRandomWith<BFloat16, DoubleToBFloat16>(destination, distribution, first, second, seed); break;
            default: throw new ArgumentException($"random fill: needs a floating-point tensor, got {destination.Describe()}");
        }
    }

    private void FillRandomWith<T, TConvert>(Tensor destination, RandomDistribution distribution, double first, double second, ulong seed)
        where T : unmanaged where TConvert : IElementConverter<double, T>
    {
        T* values = Pointer<T>(destination);
        CpuParallel.For(destination.ElementCount, Threads, 16384, (start, end) =>
        {
            for (long i = start; i < end; i++)
            {
                double sample = distribution == RandomDistribution.Uniform
                    ? first + (second - first) * Philox.Uniform(seed, (ulong)i)
                    : first + second * Philox.Normal(seed, (ulong)i);
                values[i] = TConvert.Convert(sample);
            }
        });
    }
}

internal interface IElementConverter<TFrom, TTo>
{
    static abstract TTo Convert(TFrom value);
}

internal readonly struct Identity<T> : IElementConverter<T, T>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static T Convert(T value) => value;
}

internal readonly struct FloatToDouble : IElementConverter<float, double>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double Convert(float value) => value;
}

internal readonly struct DoubleToFloat : IElementConverter<double, float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Convert(double value) => (float)value;
}

internal readonly struct FloatToBFloat16 : IElementConverter<float, BFloat16>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static BFloat16 Convert(float value) => BFloat16.FromFloat(value);
}

internal readonly struct BFloat16ToFloat : IElementConverter<BFloat16, float>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Convert(BFloat16 value) => value.ToFloat();
}

/// <summary>Through float32 first: bfloat16 is defined as rounding of the float32 value (double rounding is what PyTorch does too).</summary>
internal readonly struct DoubleToBFloat16 : IElementConverter<double, BFloat16>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static BFloat16 Convert(double value) => BFloat16.FromFloat((float)value);
}

internal readonly struct BFloat16ToDouble : IElementConverter<BFloat16, double>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static double Convert(BFloat16 value) => value.ToFloat();
}

internal readonly struct IntToLong : IElementConverter<int, long>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static long Convert(int value) => value;
}

internal readonly struct LongToInt : IElementConverter<long, int>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static int Convert(long value) => checked((int)value);
}
