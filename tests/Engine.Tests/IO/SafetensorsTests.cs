using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Engine.IO;
using Engine.Tests.Support;

namespace Engine.Tests.IO;

public sealed class SafetensorsTests : IDisposable
{
    private readonly TemporaryDirectory folder = new();

    public void Dispose() => folder.Dispose();

    private string FileIn(string name) => Path.Combine(folder.Path, name);

    /// <summary>An 8-byte little-endian length, the header as given (unpadded), then the data.</summary>
    internal static byte[] RawFile(string headerJson, byte[] data, ulong? headerLength = null) =>
        RawFile(Encoding.UTF8.GetBytes(headerJson), data, headerLength);

    internal static byte[] RawFile(byte[] header, byte[] data, ulong? headerLength = null)
    {
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, headerLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        return bytes;
    }

    private static byte[] Bytes<T>(params T[] values) where T : unmanaged => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static byte[] Bits(Tensor tensor) => tensor.DType switch
    {
        DType.Float32 => Bytes(tensor.ToArray<float>()),
        DType.Float64 => Bytes(tensor.ToArray<double>()),
        DType.BFloat16 => Bytes(tensor.ToArray<BFloat16>()),
        DType.Int32 => Bytes(tensor.ToArray<int>()),
        _ => Bytes(tensor.ToArray<long>()),
    };

    private string WriteRaw(string name, byte[] bytes)
    {
        string path = FileIn(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void EveryDTypeRoundTripsBitIdentical()
    {
        using var scope = new TensorScope();
        var random = new Random(11);
        var bfloatBits = Enumerable.Range(0, 12).Select(_ => BFloat16.FromBits((ushort)random.Next(65536))).ToArray();
        var tensors = new Dictionary<string, Tensor>
        {
            ["f32"] = Tensor.FromArray([1.5f, -0f, float.PositiveInfinity, BitConverter.UInt32BitsToSingle(0x7FC00001), float.Epsilon, -3.25e-20f], 2, 3),
            ["f64"] = Tensor.FromArray([Math.PI, -0d, double.NegativeInfinity, BitConverter.UInt64BitsToDouble(0x7FF8000000000123), double.Epsilon, 1e300], 3, 2),
            ["bf16"] = Tensor.FromArray(bfloatBits, 2, 2, 3),
            ["i32"] = Tensor.FromArray([int.MinValue, -1, 0, int.MaxValue], 4),
            ["i64"] = Tensor.FromArray([long.MinValue, -1L, long.MaxValue], 3, 1),
        };
        string path = FileIn("all.safetensors");
        SafetensorsWriter.Write(path, tensors);

        Tensor loadedF32;
        using (var file = SafetensorsFile.Open(path))
        {
            Assert.Equal(["f32", "f64", "bf16", "i32", "i64"], file.Names);
            Assert.Equal(["F32", "F64", "BF16", "I32", "I64"], file.Names.Select(name => file.Entry(name).DTypeName));
            foreach (var (name, expected) in tensors)
            {
                var loaded = file.Load(name);
                Assert.Equal(expected.DType, loaded.DType);
                Assert.Equal(expected.ShapeArray(), loaded.ShapeArray());
                Assert.Equal(expected.ShapeArray(), file.Entry(name).Shape);
                Assert.Equal(Bits(expected), Bits(loaded));
                Assert.Equal(Bits(expected), file.RawBytes(name).ToArray());
            }
            loadedF32 = file.Load("f32");
        }
        // Loads are copies: they outlive the mapping, while the file itself refuses further use.
        Assert.Equal(Bits(tensors["f32"]), Bits(loadedF32));
        var closed = SafetensorsFile.Open(path);
        closed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => closed.Load("f32"));
    }

    [Fact]
    public void NonContiguousScalarAndEmptyTensorsRoundTrip()
    {
        using var scope = new TensorScope();
        var matrix = Tensor.FromArray(Enumerable.Range(0, 12).Select(i => (float)i).ToArray(), 3, 4);
        var tensors = new Dictionary<string, Tensor>
        {
            ["transposed"] = matrix.Transpose(0, 1),
            ["offset_view"] = Tensor.FromArray([10L, 11, 12, 13, 14], 5).Narrow(0, 2, 3),
            ["scalar"] = Tensor.Scalar(-7.5, DType.Float64),
            ["empty"] = Tensor.Zeros([0, 3]),
            ["empty_bf16"] = Tensor.Zeros([2, 0, 4], DType.BFloat16),
        };
        Assert.False(tensors["transposed"].IsContiguous);
        string path = FileIn("views.safetensors");
        SafetensorsWriter.Write(path, tensors);

        using var file = SafetensorsFile.Open(path);
        foreach (var (name, expected) in tensors)
        {
            var loaded = file.Load(name);
            Assert.Equal(expected.ShapeArray(), loaded.ShapeArray());
            Assert.Equal(Bits(expected), Bits(loaded));
        }
        Assert.Equal([0f, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11], file.Load("transposed").ToArray<float>());
        Assert.Equal([12L, 13, 14], file.Load("offset_view").ToArray<long>());
        Assert.Empty(file.Entry("scalar").Shape);
        Assert.Equal(0, file.Entry("empty").ByteLength);
    }

    [Fact]
    public void MetadataRoundTripsAndDefaultsToFormatPt()
    {
        using var scope = new TensorScope();
        var tensors = new Dictionary<string, Tensor> { ["w"] = Tensor.Zeros([2]) };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "größe \"quoted\" <tag> \n line" };

        string custom = FileIn("custom.safetensors");
        SafetensorsWriter.Write(custom, tensors, metadata);
        using (var file = SafetensorsFile.Open(custom))
        {
            Assert.Equal(metadata, file.Metadata);
        }
        string defaulted = FileIn("default.safetensors");
        SafetensorsWriter.Write(defaulted, tensors);
        using (var file = SafetensorsFile.Open(defaulted))
        {
            Assert.Equal(new Dictionary<string, string> { ["format"] = "pt" }, file.Metadata);
        }
        string none = FileIn("none.safetensors");
        SafetensorsWriter.Write(none, tensors, new Dictionary<string, string>());
        using (var file = SafetensorsFile.Open(none))
        {
            Assert.Empty(file.Metadata);
        }
    }

    /// <summary>A header written by hand (metadata in the middle, names unsorted, a gap, trailing spaces) parses as the format defines it.</summary>
    [Fact]
    public void HandWrittenFileParsesWithExactEntries()
    {
        using var scope = new TensorScope();
        const string header = """{"zeta":{"dtype":"I64","shape":[2],"data_offsets":[8,24]},"__metadata__":{"format":"pt","k":"v"},"alpha":{"shape":[1,2],"data_offsets":[0,8],"dtype":"F32"},"b":{"dtype":"BF16","shape":[],"data_offsets":[28,30]}}   """;
        var data = Bytes(1.0f, -2.5f).Concat(Bytes(3L, -4L)).Concat(new byte[4]).Concat(Bytes((ushort)0x3FC0)).ToArray();
        string path = WriteRaw("hand.safetensors", RawFile(header, data));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(["zeta", "alpha", "b"], file.Names);
        Assert.Equal(new Dictionary<string, string> { ["format"] = "pt", ["k"] = "v" }, file.Metadata);
        var zeta = file.Entry("zeta");
        Assert.Equal("I64", zeta.DTypeName);
        Assert.Equal([2], zeta.Shape);
        Assert.Equal((8L, 24L), (zeta.DataBegin, zeta.DataEnd));
        var alpha = file.Entry("alpha");
        Assert.Equal("F32", alpha.DTypeName);
        Assert.Equal([1, 2], alpha.Shape);
        Assert.Equal((0L, 8L), (alpha.DataBegin, alpha.DataEnd));
        Assert.Equal((28L, 30L), (file.Entry("b").DataBegin, file.Entry("b").DataEnd));
        Assert.Equal([1.0f, -2.5f], file.Load("alpha").ToArray<float>());
        Assert.Equal([3L, -4L], file.Load("zeta").ToArray<long>());
        Assert.Equal(1.5, file.Load("b").Item());
        Assert.True(file.Contains("b"));
        Assert.False(file.Contains("__metadata__"));
    }

    /// <summary>The writer's bytes, spelled out: the length prefix, the compact header padded with spaces to 8 bytes, the data.</summary>
    [Fact]
    public void WriterProducesTheExpectedBytes()
    {
        using var scope = new TensorScope();
        string path = FileIn("exact.safetensors");
        SafetensorsWriter.Write(path, [new("x", Tensor.FromArray([1f, -2f], 2)), new("n", Tensor.FromArray([7], 1))]);

        const string json = """{"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"n":{"dtype":"I32","shape":[1],"data_offsets":[8,12]}}""";
        string padded = json.PadRight((json.Length + 7) / 8 * 8);
        var expected = RawFile(padded, Bytes(1f, -2f).Concat(Bytes(7)).ToArray());
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void F16IsConvertedToFloat32OnLoad()
    {
        using var scope = new TensorScope();
        var halves = new[] { (Half)1.5f, (Half)(-2f), Half.MaxValue, Half.Epsilon, Half.NegativeInfinity, (Half)0.1f };
        const string header = """{"h":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}""";
        string path = WriteRaw("half.safetensors", RawFile(header, Bytes(halves)));

        using var file = SafetensorsFile.Open(path);
        var loaded = file.Load("h");
        Assert.Equal(DType.Float32, loaded.DType);
        Assert.Equal([2, 3], loaded.ShapeArray());
        Assert.Equal(halves.Select(h => (float)h), loaded.ToArray<float>());
        Assert.Equal(halves.Select(h => (double)(float)h), file.Load("h", DType.Float64).ToArray<double>());
        Assert.Equal(Bytes(halves), file.RawBytes("h").ToArray());
    }

    [Fact]
    public void FloatDTypesConvertOnRequestAndIntegersRefuseFloats()
    {
        using var scope = new TensorScope();
        var bfloats = new[] { 1.5f, -0.0078125f, 3.0e38f }.Select(BFloat16.FromFloat).ToArray();
        string path = FileIn("convert.safetensors");
        SafetensorsWriter.Write(path, [new("bf", Tensor.FromArray(bfloats, 3)), new("f", Tensor.FromArray([1.00390625f], 1)), new("i", Tensor.FromArray([5], 1))]);

        using var file = SafetensorsFile.Open(path);
        Assert.Equal(DType.BFloat16, file.Load("bf").DType);
        Assert.Equal(bfloats.Select(b => b.ToFloat()), file.Load("bf", DType.Float32).ToArray<float>());
        // 1 + 2^-8 is a tie between two bfloat16 values; round to nearest even gives 1.
        Assert.Equal(1f, file.Load("f", DType.BFloat16).ToArray<BFloat16>()[0].ToFloat());
        Assert.Equal([5L], file.Load("i", DType.Int64).ToArray<long>());
        var error = Assert.Throws<ArgumentException>(() => file.Load("bf", DType.Int32));
        Assert.Contains("convert.safetensors", error.Message);
        Assert.Contains("'bf'", error.Message);
        Assert.Contains("int32", error.Message);
    }

    [Fact]
    public void NarrowIntegerDTypesLoadWidened()
    {
        using var scope = new TensorScope();
        const string header = """{"i16":{"dtype":"I16","shape":[2],"data_offsets":[0,4]},"u8":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},"i8":{"dtype":"I8","shape":[2],"data_offsets":[6,8]},"bool":{"dtype":"BOOL","shape":[2],"data_offsets":[8,10]},"u16":{"dtype":"U16","shape":[1],"data_offsets":[10,12]},"u32":{"dtype":"U32","shape":[1],"data_offsets":[12,16]},"u64":{"dtype":"U64","shape":[1],"data_offsets":[16,24]}}""";
        var data = Bytes<short>(-32768, 32767).Concat(new byte[] { 0, 255 }).Concat(Bytes<sbyte>(-128, 127)).Concat(new byte[] { 0, 1 })
            .Concat(Bytes<ushort>(65535)).Concat(Bytes(uint.MaxValue)).Concat(Bytes(ulong.MaxValue)).ToArray();
        string path = WriteRaw("ints.safetensors", RawFile(header, data));

        using var file = SafetensorsFile.Open(path);
        Assert.Equal([-32768, 32767], file.Load("i16").ToArray<int>());
        Assert.Equal([0, 255], file.Load("u8").ToArray<int>());
        Assert.Equal([-128, 127], file.Load("i8").ToArray<int>());
        Assert.Equal([0, 1], file.Load("bool").ToArray<int>());
        Assert.Equal([65535], file.Load("u16").ToArray<int>());
        Assert.Equal([(long)uint.MaxValue], file.Load("u32").ToArray<long>());
        Assert.Equal([-32768L, 32767], file.Load("i16", DType.Int64).ToArray<long>());
        var error = Assert.Throws<NotSupportedException>(() => file.Load("u64"));
        Assert.Contains("ints.safetensors", error.Message);
        Assert.Contains("'u64'", error.Message);
        Assert.Equal(Bytes(ulong.MaxValue), file.RawBytes("u64").ToArray());
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        using var scope = new TensorScope();
        string path = FileIn("one.safetensors");
        SafetensorsWriter.Write(path, [new("present", Tensor.Zeros([1]))]);
        using var file = SafetensorsFile.Open(path);
        var error = Assert.Throws<KeyNotFoundException>(() => file.Load("absent"));
        Assert.Contains("one.safetensors", error.Message);
        Assert.Contains("'absent'", error.Message);
    }

    private const string W8 = """ "w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]} """;

    /// <summary>Each malformed file: its bytes, and the fragments (besides the file name) its error must contain.</summary>
    private static readonly Dictionary<string, (byte[] File, string[] Fragments)> MalformedFiles = new()
    {
        ["too-short"] = ([1, 2, 3], ["8-byte header length"]),
        ["header-past-end"] = (RawFile("{" + W8 + "}", new byte[8], headerLength: 1000), ["header length 1000"]),
        ["offsets-outside-data"] = (RawFile("{" + W8 + "}", new byte[4]), ["'w'", "data_offsets", "outside"]),
        ["overlap"] = (RawFile("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12]), ["'a'", "'b'", "overlap"]),
        ["size-mismatch"] = (RawFile("""{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "shape [3]"]),
        ["overflowing-shape"] = (RawFile("""{"w":{"dtype":"F32","shape":[2147483647,2147483647,2147483647],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "shape"]),
        ["unknown-dtype"] = (RawFile("""{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'dtype'", "F33"]),
        ["non-utf8"] = (RawFile([.. "{\"w"u8.ToArray(), 0xFF, .. "\":{}}"u8.ToArray()], []), ["UTF-8"]),
        ["invalid-json"] = (RawFile("""{"w":{"dtype":"F32",""", []), ["JSON"]),
        ["trailing-comma"] = (RawFile("{" + W8 + ",}", new byte[8]), ["JSON"]),
        ["root-not-object"] = (RawFile("[1, 2]", []), ["not an object"]),
        ["entry-not-object"] = (RawFile("""{"w":3}""", []), ["'w'", "object"]),
        ["negative-dim"] = (RawFile("""{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'shape'", "-2"]),
        ["fractional-dim"] = (RawFile("""{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,6]}}""", new byte[8]), ["'w'", "'shape'", "1.5"]),
        ["huge-dim"] = (RawFile("""{"w":{"dtype":"U8","shape":[3000000000],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'shape'", "3000000000"]),
        ["missing-dtype"] = (RawFile("""{"w":{"shape":[2],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'dtype'", "missing"]),
        ["missing-shape"] = (RawFile("""{"w":{"dtype":"F32","data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'shape'", "missing"]),
        ["missing-offsets"] = (RawFile("""{"w":{"dtype":"F32","shape":[2]}}""", new byte[8]), ["'w'", "'data_offsets'", "missing"]),
        ["dtype-not-string"] = (RawFile("""{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}""", new byte[4]), ["'w'", "'dtype'"]),
        ["reversed-offsets"] = (RawFile("""{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", new byte[8]), ["'w'", "data_offsets"]),
        ["negative-offset"] = (RawFile("""{"w":{"dtype":"F32","shape":[0],"data_offsets":[-1,0]}}""", new byte[8]), ["'w'", "data_offsets", "-1"]),
        ["one-offset"] = (RawFile("""{"w":{"dtype":"F32","shape":[0],"data_offsets":[0]}}""", []), ["'w'", "data_offsets"]),
        ["duplicate-name"] = (RawFile("{" + W8 + "," + W8 + "}", new byte[8]), ["'w'", "twice"]),
        ["duplicate-field"] = (RawFile("""{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", new byte[8]), ["'w'", "'dtype'", "twice"]),
        ["metadata-not-string"] = (RawFile("""{"__metadata__":{"k":1}}""", []), ["__metadata__", "'k'"]),
        ["metadata-not-object"] = (RawFile("""{"__metadata__":"x"}""", []), ["__metadata__", "not an object"]),
        ["lone-surrogate"] = (RawFile("""{"\ud800":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}""", []), ["decode"]),
    };

    public static TheoryData<string> MalformedFileNames => [.. MalformedFiles.Keys];

    [Theory]
    [MemberData(nameof(MalformedFileNames))]
    public void MalformedFileIsRejectedNamingFileAndField(string caseName)
    {
        var (bytes, fragments) = MalformedFiles[caseName];
        string path = WriteRaw($"{caseName}.safetensors", bytes);
        var error = Assert.Throws<InvalidDataException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains($"{caseName}.safetensors", error.Message);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, error.Message);
        }
    }

    /// <summary>
    /// Truncations at every length and a few hundred seeded corruptions of the length prefix and header either open (and then
    /// every tensor loads) or raise <see cref="InvalidDataException"/>; no other exception may escape.
    /// </summary>
    [Fact]
    public void CorruptedFilesOpenCleanlyOrRaiseInvalidData()
    {
        using var scope = new TensorScope();
        string validPath = FileIn("valid.safetensors");
        SafetensorsWriter.Write(validPath,
        [
            new("embed.weight", Tensor.Uniform([3, 4], -1, 1, seed: 3)),
            new("norm", Tensor.Uniform([4], -1, 1, seed: 4, DType.BFloat16)),
            new("steps", Tensor.FromArray([42L], [])),
            new("ids", Tensor.FromArray([1, 2, 3], 3)),
            new("nothing", Tensor.Zeros([0, 2], DType.Float64)),
        ], new Dictionary<string, string> { ["format"] = "pt", ["step"] = "12" });
        var valid = File.ReadAllBytes(validPath);
        int headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);

        string path = FileIn("corrupt.safetensors");
        void Check(byte[] bytes, string variant)
        {
            File.WriteAllBytes(path, bytes);
            try
            {
                using var file = SafetensorsFile.Open(path);
                foreach (string name in file.Names)
                {
                    if (file.Entry(name).DTypeName is "U64" or "F8_E4M3" or "F8_E5M2")
                    {
                        Assert.Throws<NotSupportedException>(() => file.Load(name));
                    }
                    else
                    {
                        file.Load(name).Dispose();
                    }
                    _ = file.RawBytes(name).Length;
                }
            }
            catch (InvalidDataException)
            {
            }
            catch (Exception error) when (error is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"{variant}: {error}");
            }
        }

        for (int length = 0; length < valid.Length; length++)
        {
            Check(valid[..length], $"truncated to {length} bytes");
        }
        // Random bytes mostly break the JSON; replacing digits keeps it valid and reaches the shape and offset checks.
        int[] digitPositions = [.. Enumerable.Range(8, headerEnd - 8).Where(i => char.IsAsciiDigit((char)valid[i]))];
        var random = new Random(20240601);
        for (int variant = 0; variant < 500; variant++)
        {
            var bytes = (byte[])valid.Clone();
            switch (variant % 5)
            {
                case 0:
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)random.NextInt64());
                    break;
                case 1:
                    bytes[random.Next(8)] ^= (byte)(1 << random.Next(8));
                    break;
                case 2:
                    bytes[random.Next(8, headerEnd)] ^= (byte)(1 << random.Next(8));
                    break;
                case 3:
                    for (int hits = random.Next(1, 4); hits > 0; hits--)
                    {
                        bytes[random.Next(8, headerEnd)] = (byte)random.Next(256);
                    }
                    break;
                default:
                    for (int hits = random.Next(1, 3); hits > 0; hits--)
                    {
                        bytes[digitPositions[random.Next(digitPositions.Length)]] = (byte)('0' + random.Next(10));
                    }
                    break;
            }
            Check(bytes, $"variant {variant}");
        }
    }

    [Fact]
    public void FailedWriteLeavesTheOldFileAndNoTemporaryFiles()
    {
        using var scope = new TensorScope();
        string path = FileIn("model.safetensors");
        SafetensorsWriter.Write(path, [new("old", Tensor.Full([4], 3))]);
        var before = File.ReadAllBytes(path);

        var disposed = Tensor.Zeros([1000]);
        disposed.Dispose();
        var failure = Assert.Throws<ObjectDisposedException>(() =>
            SafetensorsWriter.Write(path, [new("first", Tensor.Full([5000], 1)), new("gone", disposed), new("last", Tensor.Zeros([2]))]));
        Assert.Contains("'gone'", failure.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(folder.Path));

        var duplicate = Assert.Throws<ArgumentException>(() =>
            SafetensorsWriter.Write(path, [new("twice", Tensor.Zeros([1])), new("twice", Tensor.Zeros([1]))]));
        Assert.Contains("'twice'", duplicate.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(folder.Path));
    }
}
