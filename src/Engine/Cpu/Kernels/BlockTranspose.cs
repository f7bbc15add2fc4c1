using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Cpu.Kernels;

/// <summary>In-register transposes of square float blocks (AVX-512): attention's K/V tiles and the sampled weight gradient's token-major copies.</summary>
internal static unsafe class BlockTranspose
{
    /// <summary>dst[d·ldDst + j] = factor·src[j·ldSrc + d] for a 16×16 block: unpack, in-lane shuffle, then two 128-bit-lane shuffle stages.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Float16x16(float* src, nint ldSrc, float* dst, nint ldDst, float factor)
    {
        var f = Vector512.Create(factor);
        var r0 = Vector512.Load(src) * f; var r1 = Vector512.Load(src + ldSrc) * f;
        var r2 = Vector512.Load(src + 2 * ldSrc) * f; var r3 = Vector512.Load(src + 3 * ldSrc) * f;
        var r4 = Vector512.Load(src + 4 * ldSrc) * f; var r5 = Vector512.Load(src + 5 * ldSrc) * f;
        var r6 = Vector512.Load(src + 6 * ldSrc) * f; var r7 = Vector512.Load(src + 7 * ldSrc) * f;
        var r8 = Vector512.Load(src + 8 * ldSrc) * f; var r9 = Vector512.Load(src + 9 * ldSrc) * f;
        var ra = Vector512.Load(src + 10 * ldSrc) * f; var rb = Vector512.Load(src + 11 * ldSrc) * f;
        var rc = Vector512.Load(src + 12 * ldSrc) * f; var rd = Vector512.Load(src + 13 * ldSrc) * f;
        var re = Vector512.Load(src + 14 * ldSrc) * f; var rf = Vector512.Load(src + 15 * ldSrc) * f;

        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var ta = Avx512F.UnpackLow(ra, rb); var tb = Avx512F.UnpackHigh(ra, rb);
        var tc = Avx512F.UnpackLow(rc, rd); var td = Avx512F.UnpackHigh(rc, rd);
        var te = Avx512F.UnpackLow(re, rf); var tf = Avx512F.UnpackHigh(re, rf);

        r0 = Avx512F.Shuffle(t0, t2, 0x44); r1 = Avx512F.Shuffle(t0, t2, 0xEE);
        r2 = Avx512F.Shuffle(t1, t3, 0x44); r3 = Avx512F.Shuffle(t1, t3, 0xEE);
        r4 = Avx512F.Shuffle(t4, t6, 0x44); r5 = Avx512F.Shuffle(t4, t6, 0xEE);
        r6 = Avx512F.Shuffle(t5, t7, 0x44); r7 = Avx512F.Shuffle(t5, t7, 0xEE);
        r8 = Avx512F.Shuffle(t8, ta, 0x44); r9 = Avx512F.Shuffle(t8, ta, 0xEE);
        ra = Avx512F.Shuffle(t9, tb, 0x44); rb = Avx512F.Shuffle(t9, tb, 0xEE);
        rc = Avx512F.Shuffle(tc, te, 0x44); rd = Avx512F.Shuffle(tc, te, 0xEE);
        re = Avx512F.Shuffle(td, tf, 0x44); rf = Avx512F.Shuffle(td, tf, 0xEE);

        t0 = Avx512F.Shuffle4x128(r0, r4, 0x88); t1 = Avx512F.Shuffle4x128(r1, r5, 0x88);
        t2 = Avx512F.Shuffle4x128(r2, r6, 0x88); t3 = Avx512F.Shuffle4x128(r3, r7, 0x88);
        t4 = Avx512F.Shuffle4x128(r0, r4, 0xDD); t5 = Avx512F.Shuffle4x128(r1, r5, 0xDD);
        t6 = Avx512F.Shuffle4x128(r2, r6, 0xDD); t7 = Avx512F.Shuffle4x128(r3, r7, 0xDD);
        t8 = Avx512F.Shuffle4x128(r8, rc, 0x88); t9 = Avx512F.Shuffle4x128(r9, rd, 0x88);
        ta = Avx512F.Shuffle4x128(ra, re, 0x88); tb = Avx512F.Shuffle4x128(rb, rf, 0x88);
        tc = Avx512F.Shuffle4x128(r8, rc, 0xDD); td = Avx512F.Shuffle4x128(r9, rd, 0xDD);
        te = Avx512F.Shuffle4x128(ra, re, 0xDD); tf = Avx512F.Shuffle4x128(rb, rf, 0xDD);

        Avx512F.Shuffle4x128(t0, t8, 0x88).Store(dst); Avx512F.Shuffle4x128(t1, t9, 0x88).Store(dst + ldDst);
        Avx512F.Shuffle4x128(t2, ta, 0x88).Store(dst + 2 * ldDst); Avx512F.Shuffle4x128(t3, tb, 0x88).Store(dst + 3 * ldDst);
        Avx512F.Shuffle4x128(t4, tc, 0x88).Store(dst + 4 * ldDst); Avx512F.Shuffle4x128(t5, td, 0x88).Store(dst + 5 * ldDst);
        Avx512F.Shuffle4x128(t6, te, 0x88).Store(dst + 6 * ldDst); Avx512F.Shuffle4x128(t7, tf, 0x88).Store(dst + 7 * ldDst);
        Avx512F.Shuffle4x128(t0, t8, 0xDD).Store(dst + 8 * ldDst); Avx512F.Shuffle4x128(t1, t9, 0xDD).Store(dst + 9 * ldDst);
        Avx512F.Shuffle4x128(t2, ta, 0xDD).Store(dst + 10 * ldDst); Avx512F.Shuffle4x128(t3, tb, 0xDD).Store(dst + 11 * ldDst);
        Avx512F.Shuffle4x128(t4, tc, 0xDD).Store(dst + 12 * ldDst); Avx512F.Shuffle4x128(t5, td, 0xDD).Store(dst + 13 * ldDst);
        Avx512F.Shuffle4x128(t6, te, 0xDD).Store(dst + 14 * ldDst); Avx512F.Shuffle4x128(t7, tf, 0xDD).Store(dst + 15 * ldDst);
    }
}
