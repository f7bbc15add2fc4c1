using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;

namespace Engine.IO;

/// <summary>One tensor's header entry: the dtype as spelled in the file, the shape, and its byte range relative to the start of the data section.</summary>
public sealed record SafetensorsEntry(string Name, string DTypeName, int[] Shape, long DataBegin, long DataEnd)
{
    public long ByteLength => DataEnd - DataBegin;
}

/// <summary>
/// A read-only, memory-mapped safetensors file: an 8-byte little-endian header length N, N bytes of JSON header, then raw
/// little-endian tensor data. <see cref="Open"/> validates the whole header, so no later call can read outside the mapping.
/// Loaded tensors are copies and outlive the file; spans from <see cref="RawBytes"/> are valid only until <see cref="Dispose"/>.
/// Gaps between tensors and bytes after the last one are allowed (the format does not need them, but they are harmless).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    internal const string MetadataKey = "__metadata__";

    /// <summary>The reference implementation's limit: it keeps a corrupt length prefix from allocating gigabytes.</summary>
    private const long MaxHeaderBytes = 100_000_000;

    /// <summary>Uploads and conversions go in pieces: spans cannot exceed 2 GiB, and a bounded buffer keeps conversion memory flat.</summary>
    private const int RawChunkBytes = 1 << 26;
    private const int ConvertChunkElements = 1 << 20;

    private readonly MemoryMappedFile mapping;
    private readonly MemoryMappedViewAccessor view;
    private readonly byte* data;
    private readonly Dictionary<string, SafetensorsEntry> entries;
    private bool disposed;

    private SafetensorsFile(string path, MemoryMappedFile mapping, MemoryMappedViewAccessor view, long dataStart, Header header)
    {
        Path = path;
        this.mapping = mapping;
        this.view = view;
        byte* origin = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref origin);
        data = origin + view.PointerOffset + dataStart;
        entries = header.Entries;
        Names = header.Names;
        Metadata = header.Metadata;
    }

    public string Path { get; }

    /// <summary>The header's "__metadata__" (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Tensor names in header order.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Maps and validates a file; a malformed file raises <see cref="InvalidDataException"/> naming the file and the field at fault.</summary>
    public static SafetensorsFile Open(string path)
    {
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        MemoryMappedFile? mapping = null;
        MemoryMappedViewAccessor? view = null;
        try
        {
            long fileLength = stream.Length;
            if (fileLength < sizeof(ulong))
            {
                throw Malformed(path, $"the file is {fileLength} bytes, too short for the 8-byte header length");
            }
            Span<byte> prefix = stackalloc byte[sizeof(ulong)];
            stream.ReadExactly(prefix);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (headerLength > (ulong)(fileLength - sizeof(ulong)))
            {
                throw Malformed(path, $"header length {headerLength} runs past the end of the file ({fileLength} bytes)");
            }
            if (headerLength > MaxHeaderBytes)
            {
                throw Malformed(path, $"header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
            }
            var headerBytes = new byte[headerLength];
            stream.ReadExactly(headerBytes);
            long dataStart = sizeof(ulong) + (long)headerLength;
            var header = ParseHeader(path, headerBytes, fileLength - dataStart);
            mapping = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = mapping.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SafetensorsFile(path, mapping, view, dataStart, header);
        }
        catch
        {
            view?.Dispose();
            if (mapping is null)
            {
                stream.Dispose();
            }
            else
            {
                mapping.Dispose();
            }
            throw;
        }
    }

    public bool Contains(string name) => entries.ContainsKey(name);

    public SafetensorsEntry Entry(string name) =>
        entries.TryGetValue(name, out var entry) ? entry : throw new KeyNotFoundException($"safetensors file '{Path}' has no tensor '{name}'");

    /// <summary>
    /// Copies a tensor onto a device. Stored dtypes load as: F32, F16 → float32 (F16 converted); BF16 → bfloat16; F64 → float64;
    /// I32, I16, U16, I8, U8, BOOL → int32; I64, U32 → int64. A requested <paramref name="dtype"/> is reached by the backend's
    /// conversion, which stays within floats or within integers.
    /// </summary>
    public Tensor Load(string name, DType? dtype = null, Device? device = null)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var entry = Entry(name);
        var loadedAs = LoadedDType(entry.DTypeName)
            ?? throw new NotSupportedException($"safetensors file '{Path}': tensor '{name}' has dtype {entry.DTypeName}, which the engine cannot load");
        var target = dtype ?? loadedAs;
        if (target.IsFloatingPoint() != loadedAs.IsFloatingPoint())
        {
            throw new ArgumentException($"safetensors file '{Path}': tensor '{name}' ({entry.DTypeName}) cannot be converted to {target.ToString().ToLowerInvariant()}: float and integer dtypes do not mix");
        }
        var tensor = Tensor.Empty(entry.Shape, loadedAs, device);
        try
        {
            Upload(entry, tensor);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        if (target == loadedAs)
        {
            return tensor;
        }
        using (tensor)
        {
            return tensor.To(target);
        }
    }

    /// <summary>A tensor's bytes exactly as stored, for tools; valid until the file is disposed.</summary>
    public ReadOnlySpan<byte> RawBytes(string name)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var entry = Entry(name);
        if (entry.ByteLength > int.MaxValue)
        {
            throw new NotSupportedException($"safetensors file '{Path}': tensor '{name}' has {entry.ByteLength} bytes, more than one span can hold; use Load");
        }
        return new ReadOnlySpan<byte>(data + entry.DataBegin, (int)entry.ByteLength);
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        mapping.Dispose();
    }

    // ---------------------------------------------------------------- loading

    private static DType? LoadedDType(string dtypeName) => dtypeName switch
    {
        "F32" or "F16" => DType.Float32,
        "BF16" => DType.BFloat16,
        "F64" => DType.Float64,
        "I32" or "I16" or "U16" or "I8" or "U8" or "BOOL" => DType.Int32,
        "I64" or "U32" => DType.Int64,
        _ => null,
    };

    private void Upload(SafetensorsEntry entry, Tensor destination)
    {
        byte* source = data + entry.DataBegin;
        switch (entry.DTypeName)
        {
            case "F16": UploadConverted<Half, float>(source, destination); break;
            case "I16": UploadConverted<short, int>(source, destination); break;
            case "U16": UploadConverted<ushort, int>(source, destination); break;
            case "I8": UploadConverted<sbyte, int>(source, destination); break;
            case "U8" or "BOOL": UploadConverted<byte, int>(source, destination); break;
            case "U32": UploadConverted<uint, long>(source, destination); break;
            default: UploadRaw(source, entry.ByteLength, destination); break;
        }
    }

    private static void UploadRaw(byte* source, long byteLength, Tensor destination)
    {
        for (long done = 0; done < byteLength; done += RawChunkBytes)
        {
            int count = (int)Math.Min(RawChunkBytes, byteLength - done);
            destination.Backend.Upload(new ReadOnlySpan<byte>(source + done, count), destination.Storage, done);
        }
    }

    /// <summary>Widens on the host (every such conversion is exact), then uploads.</summary>
    private static void UploadConverted<TFrom, TTo>(byte* source, Tensor destination)
        where TFrom : unmanaged, INumberBase<TFrom> where TTo : unmanaged, INumberBase<TTo>
    {
        long count = destination.ElementCount;
        var buffer = new TTo[Math.Min(count, ConvertChunkElements)];
        for (long done = 0; done < count; done += buffer.Length)
        {
            var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, count - done));
            TensorPrimitives.ConvertTruncating(new ReadOnlySpan<TFrom>((TFrom*)source + done, chunk.Length), chunk);
            destination.Backend.Upload(MemoryMarshal.AsBytes(chunk), destination.Storage, done * sizeof(TTo));
        }
    }

    // ---------------------------------------------------------------- header validation

    private sealed record Header(Dictionary<string, SafetensorsEntry> Entries, List<string> Names, Dictionary<string, string> Metadata);

    /// <summary>Bytes per element of the dtypes the format defines (the reference implementation's list); 0 for anything else.</summary>
    private static int ElementSize(string dtypeName) => dtypeName switch
    {
        "F64" or "I64" or "U64" => 8,
        "F32" or "I32" or "U32" => 4,
        "F16" or "BF16" or "I16" or "U16" => 2,
        "I8" or "U8" or "BOOL" or "F8_E4M3" or "F8_E5M2" => 1,
        _ => 0,
    };

    internal static InvalidDataException Malformed(string path, string detail, Exception? inner = null) =>
        new($"safetensors file '{path}': {detail}", inner);

    /// <summary>Parses JSON after checking it is UTF-8, so neither problem surfaces as anything but <see cref="InvalidDataException"/>.</summary>
    internal static JsonDocument ParseJson(byte[] bytes, Func<string, Exception?, InvalidDataException> malformed)
    {
        if (!Utf8.IsValid(bytes))
        {
            throw malformed("the JSON is not valid UTF-8", null);
        }
        try
        {
            return JsonDocument.Parse(bytes);
        }
        catch (JsonException error)
        {
            throw malformed($"invalid JSON: {error.Message}", error);
        }
    }

    private static Header ParseHeader(string path, byte[] headerBytes, long dataLength)
    {
        using var document = ParseJson(headerBytes, (detail, inner) => Malformed(path, $"header: {detail}", inner));
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw Malformed(path, $"the header is a JSON {root.ValueKind}, not an object");
        }
        var header = new Header([], [], []);
        bool sawMetadata = false;
        try
        {
            foreach (var property in root.EnumerateObject())
            {
                string name = property.Name;
                if (name == MetadataKey)
                {
                    if (sawMetadata)
                    {
                        throw Malformed(path, $"'{MetadataKey}' appears twice");
                    }
                    sawMetadata = true;
                    ParseMetadata(path, property.Value, header.Metadata);
                    continue;
                }
                if (header.Entries.ContainsKey(name))
                {
                    throw Malformed(path, $"tensor '{name}' appears twice");
                }
                header.Entries.Add(name, ParseEntry(path, name, property.Value, dataLength));
                header.Names.Add(name);
            }
        }
        catch (InvalidOperationException error)
        {
            // JsonElement raises this for a string whose escapes decode to invalid UTF-16 (a lone surrogate).
            throw Malformed(path, $"header: a string does not decode: {error.Message}", error);
        }
        RejectOverlaps(path, header.Entries.Values);
        return header;
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Malformed(path, $"'{MetadataKey}' is a JSON {value.ValueKind}, not an object");
        }
        foreach (var property in value.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.String)
            {
                throw Malformed(path, $"'{MetadataKey}' key '{property.Name}' is a JSON {property.Value.ValueKind}, not a string");
            }
            if (!metadata.TryAdd(property.Name, property.Value.GetString()!))
            {
                throw Malformed(path, $"'{MetadataKey}' key '{property.Name}' appears twice");
            }
        }
    }

    private static SafetensorsEntry ParseEntry(string path, string name, JsonElement value, long dataLength)
    {
        InvalidDataException Bad(string detail) => Malformed(path, $"tensor '{name}': {detail}");

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw Bad($"expected an object, got a JSON {value.ValueKind}");
        }
        // Unknown fields are ignored, as the reference implementation does; known ones must appear once.
        var fields = new Dictionary<string, JsonElement>();
        foreach (var field in value.EnumerateObject())
        {
            if (!fields.TryAdd(field.Name, field.Value))
            {
                throw Bad($"field '{field.Name}' appears twice");
            }
        }
        JsonElement Field(string field, JsonValueKind kind) =>
            !fields.TryGetValue(field, out var element) ? throw Bad($"field '{field}' is missing")
            : element.ValueKind != kind ? throw Bad($"field '{field}' is a JSON {element.ValueKind}, not {kind}")
            : element;

        string dtypeName = Field("dtype", JsonValueKind.String).GetString()!;
        int elementSize = ElementSize(dtypeName);
        if (elementSize == 0)
        {
            throw Bad($"field 'dtype' has the unknown value '{dtypeName}'");
        }

        var shapeElement = Field("shape", JsonValueKind.Array);
        var shape = new int[shapeElement.GetArrayLength()];
        int axis = 0;
        foreach (var size in shapeElement.EnumerateArray())
        {
            if (size.ValueKind != JsonValueKind.Number || !size.TryGetInt32(out shape[axis]) || shape[axis] < 0)
            {
                throw Bad($"field 'shape' has {size.GetRawText()} at axis {axis}, not a non-negative 32-bit integer");
            }
            axis++;
        }

        var offsets = Field("data_offsets", JsonValueKind.Array);
        if (offsets.GetArrayLength() != 2)
        {
            throw Bad($"field 'data_offsets' has {offsets.GetArrayLength()} values, not [begin, end]");
        }
        long begin = Offset(offsets[0]), end = Offset(offsets[1]);
        long Offset(JsonElement element) =>
            element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out long offset) && offset >= 0
                ? offset
                : throw Bad($"field 'data_offsets' has {element.GetRawText()}, not a non-negative integer");
        if (begin > end)
        {
            throw Bad($"field 'data_offsets' [{begin}, {end}] ends before it begins");
        }
        if (end > dataLength)
        {
            throw Bad($"field 'data_offsets' [{begin}, {end}] lies outside the {dataLength}-byte data section");
        }
        if (!ShapeFits(shape, elementSize, end - begin))
        {
            throw Bad($"shape {ShapeMath.Format(shape)} of {dtypeName} does not fill data_offsets [{begin}, {end}] ({end - begin} bytes)");
        }
        return new SafetensorsEntry(name, dtypeName, shape, begin, end);
    }

    /// <summary>Whether shape × element size equals the byte length, without overflowing on absurd shapes.</summary>
    private static bool ShapeFits(int[] shape, int elementSize, long byteLength)
    {
        if (shape.Contains(0))
        {
            return byteLength == 0;
        }
        long bytes = elementSize;
        foreach (int size in shape)
        {
            if (bytes > byteLength / size)
            {
                return false;
            }
            bytes *= size;
        }
        return bytes == byteLength;
    }

    /// <summary>No byte may belong to two tensors (empty tensors own no bytes).</summary>
    private static void RejectOverlaps(string path, IEnumerable<SafetensorsEntry> entries)
    {
        SafetensorsEntry? previous = null;
        foreach (var entry in entries.Where(e => e.ByteLength > 0).OrderBy(e => e.DataBegin))
        {
            if (previous is not null && entry.DataBegin < previous.DataEnd)
            {
                throw Malformed(path, $"tensors '{previous.Name}' [{previous.DataBegin}, {previous.DataEnd}] and '{entry.Name}' [{entry.DataBegin}, {entry.DataEnd}] overlap");
            }
            previous = entry;
        }
    }
}
