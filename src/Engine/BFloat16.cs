using System.Runtime.CompilerServices;

namespace Engine;

/// <summary>Brain float: the upper 16 bits of an IEEE float32. Conversion from float rounds to nearest, ties to even.</summary>
public readonly struct BFloat16 : IEquatable<BFloat16>
{
    public readonly ushort Bits;

    private BFloat16(ushort bits) => Bits = bits;

    public static BFloat16 FromBits(ushort bits) => new(bits);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static BFloat16 FromFloat(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            // Keep NaN a NaN (set a mantissa bit so truncation cannot turn it into infinity).
            return new BFloat16((ushort)((bits >> 16) | 0x0040));
        }
        // Round to nearest even: add 0x7FFF plus the lowest kept bit, then truncate.
        uint lsb = (bits >> 16) & 1;
        uint rounded = bits + 0x7FFFu + lsb;
        return new BFloat16((ushort)(rounded >> 16));
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public float ToFloat() => BitConverter.UInt32BitsToSingle((uint)Bits << 16);

    public static explicit operator BFloat16(float value) => FromFloat(value);

    public static implicit operator float(BFloat16 value) => value.ToFloat();

    public bool Equals(BFloat16 other) => Bits == other.Bits;

    public override bool Equals(object? obj) => obj is BFloat16 other && Equals(other);

    public override int GetHashCode() => Bits;

    public override string ToString() => ToFloat().ToString("R");
}
