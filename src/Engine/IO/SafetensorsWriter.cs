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
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var header = Header(list, metadata ?? DefaultMetadata);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(header);
            var buffer = new byte[Math.Min(CopyChunkBytes, list.Count == 0 ? 0 : list.Max(pair => ByteLength(pair.Value)))];
            foreach (var (name, tensor) in list)
            {
                WriteData(path, name, tensor, stream, buffer);
            }
        });
    }

    internal static long ByteLength(Tensor tensor) => tensor.ElementCount * tensor.DType.SizeInBytes();

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
    private static byte[] Header(List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string> metadata)
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
            foreach (var (name, tensor) in tensors)
            {
                if (name == SafetensorsFile.MetadataKey)
                {
                    throw new ArgumentException($"'{SafetensorsFile.MetadataKey}' is reserved and cannot name a tensor");
                }
                if (!seen.Add(name))
                {
                    throw new ArgumentException($"tensor name '{name}' appears twice; safetensors names must be unique");
                }
                long end = offset + ByteLength(tensor);
                writer.WriteStartObject(name);
                writer.WriteString("dtype", DTypeName(tensor.DType));
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
