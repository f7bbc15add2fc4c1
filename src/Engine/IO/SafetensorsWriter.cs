using System.Buffers;
using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Engine.IO;

/// <summary>
/// Writes safetensors files: float32 → F32, bfloat16 → BF16, float64 → F64, int32 → I32, int64 → I64. Tensors are laid out in
/// the order given (the reference implementation sorts by alignment then name; readers do not depend on either). The JSON
/// header is padded with spaces to a multiple of 8 bytes, as the reference implementation does.
/// </summary>
public static class SafetensorsWriter
{
    private const int CopyChunkBytes = 1 << 24;

    private static readonly IReadOnlyDictionary<string, string> DefaultMetadata = new Dictionary<string, string> { ["format"] = "pt" };

    /// <summary>
    /// Writes atomically: a temporary file beside <paramref name="path"/> is filled, flushed to disk and moved over it, so a
    /// failure leaves any existing file untouched. <paramref name="metadata"/> null writes {"format": "pt"}; empty writes none.
    /// <paramref name="narrowedIntegers"/> stores the named int32 tensors as "U8" or "I16" (peft stores VB-LoRA's top-k
    /// indices that way); a value out of the narrow type's range is an error.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        IReadOnlyDictionary<string, string>? narrowedIntegers = null)
    {
        var list = tensors.Select(pair => new Entry(pair.Key, pair.Value, StoredDType(pair.Key, pair.Value, narrowedIntegers))).ToList();
        var header = Header(list, metadata ?? DefaultMetadata);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(header);
            var buffer = new byte[Math.Min(CopyChunkBytes, list.Count == 0 ? 0 : list.Max(entry => entry.ByteLength))];
            foreach (var entry in list)
            {
                if (entry.StoredDType == DTypeName(entry.Tensor.DType))
                {
                    WriteData(path, entry.Name, entry.Tensor, stream, buffer);
                }
                else
                {
                    WriteNarrowed(path, entry, stream);
                }
            }
        });
    }

    internal static long ByteLength(Tensor tensor) => tensor.ElementCount * tensor.DType.SizeInBytes();

    private sealed record Entry(string Name, Tensor Tensor, string StoredDType)
    {
        public long ByteLength => Tensor.ElementCount * (StoredDType switch { "U8" => 1, "I16" => 2, _ => Tensor.DType.SizeInBytes() });
    }

    private static string StoredDType(string name, Tensor tensor, IReadOnlyDictionary<string, string>? narrowedIntegers)
    {
        if (narrowedIntegers is null || !narrowedIntegers.TryGetValue(name, out var stored))
        {
            return DTypeName(tensor.DType);
        }
        if (tensor.DType != DType.Int32 || stored is not ("U8" or "I16"))
        {
            throw new ArgumentException($"tensor '{name}': only int32 tensors can be stored narrowed, as U8 or I16 (asked: {tensor.Describe()} as {stored})");
        }
        return stored;
    }

    private static void WriteNarrowed(string path, Entry entry, Stream stream)
    {
        var values = entry.Tensor.ToArray<int>();
        var (low, high) = entry.StoredDType == "U8" ? (byte.MinValue, (int)byte.MaxValue) : (short.MinValue, (int)short.MaxValue);
        int bad = Array.FindIndex(values, value => value < low || value > high);
        if (bad >= 0)
        {
            throw new ArgumentException($"cannot write '{entry.Name}' to '{path}' as {entry.StoredDType}: element {bad} is {values[bad]}, outside {low}..{high}");
        }
        var bytes = new byte[entry.ByteLength];
        for (int index = 0; index < values.Length; index++)
        {
            if (entry.StoredDType == "U8")
            {
                bytes[index] = (byte)values[index];
            }
            else
            {
                BinaryPrimitives.WriteInt16LittleEndian(bytes.AsSpan(2 * index), (short)values[index]);
            }
        }
        stream.Write(bytes);
    }

    internal static string DTypeName(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float64 => "F64",
        DType.BFloat16 => "BF16",
        DType.Int32 => "I32",
        DType.Int64 => "I64",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "no safetensors dtype corresponds to this dtype"),
    };

    /// <summary>The length prefix and the padded JSON header; also checks names before any file is touched.</summary>
    private static byte[] Header(List<Entry> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        var json = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(json, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            if (metadata.Count > 0)
            {
                writer.WriteStartObject(SafetensorsFile.MetadataKey);
                foreach (var (key, value) in metadata)
                {
                    writer.WriteString(key, value);
                }
                writer.WriteEndObject();
            }
            var seen = new HashSet<string>();
            long offset = 0;
            foreach (var (name, tensor, storedDType) in tensors)
            {
                if (name == SafetensorsFile.MetadataKey)
                {
                    throw new ArgumentException($"'{SafetensorsFile.MetadataKey}' is reserved and cannot name a tensor");
                }
                if (!seen.Add(name))
                {
                    throw new ArgumentException($"tensor name '{name}' appears twice; safetensors names must be unique");
                }
                long end = offset + new Entry(name, tensor, storedDType).ByteLength;
                writer.WriteStartObject(name);
                writer.WriteString("dtype", storedDType);
                writer.WriteStartArray("shape");
                foreach (int size in tensor.Shape)
                {
                    writer.WriteNumberValue(size);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data_offsets");
                writer.WriteNumberValue(offset);
                writer.WriteNumberValue(end);
                writer.WriteEndArray();
                writer.WriteEndObject();
                offset = end;
            }
            writer.WriteEndObject();
        }
        int paddedLength = (json.WrittenCount + 7) & ~7;
        var header = new byte[sizeof(ulong) + paddedLength];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)paddedLength);
        json.WrittenSpan.CopyTo(header.AsSpan(sizeof(ulong)));
        header.AsSpan(sizeof(ulong) + json.WrittenCount).Fill((byte)' ');
        return header;
    }

    private static void WriteData(string path, string name, Tensor tensor, Stream stream, byte[] buffer)
    {
        if (tensor.IsDisposed || tensor.Storage.IsFreed)
        {
            throw new ObjectDisposedException(nameof(Tensor), $"cannot write tensor '{name}' ({tensor.Describe()}) to '{path}': it was already disposed");
        }
        using var packed = tensor.Contiguous();
        long byteLength = ByteLength(packed);
        long start = packed.Offset * packed.DType.SizeInBytes();
        for (long done = 0; done < byteLength; done += buffer.Length)
        {
            var chunk = buffer.AsSpan(0, (int)Math.Min(buffer.Length, byteLength - done));
            packed.Backend.Download(packed.Storage, start + done, chunk);
            stream.Write(chunk);
        }
    }
}
