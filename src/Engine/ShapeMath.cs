namespace Engine;

/// <summary>Shape arithmetic shared by tensors, backends and autograd.</summary>
public static class ShapeMath
{
    public static long ElementCount(ReadOnlySpan<int> shape)
    {
        long count = 1;
        foreach (int size in shape)
        {
            count *= size;
        }
        return count;
    }

    public static long[] ContiguousStrides(ReadOnlySpan<int> shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= shape[i];
        }
        return strides;
    }

    /// <summary>Row-major packed, ignoring the strides of size-1 axes (they are never stepped over).</summary>
    public static bool IsContiguous(ReadOnlySpan<int> shape, ReadOnlySpan<long> strides)
    {
        long expected = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] == 1)
            {
                continue;
            }
            if (strides[i] != expected)
            {
                return false;
            }
            expected *= shape[i];
        }
        return true;
    }

    public static void Validate(ReadOnlySpan<int> shape)
    {
        foreach (int size in shape)
        {
            if (size < 0)
            {
                throw new ArgumentException($"shape {Format(shape)} has a negative size");
            }
        }
    }

    public static string Format(ReadOnlySpan<int> shape) => "[" + string.Join(", ", shape.ToArray()) + "]";

    public static int[] ResolveReshape(ReadOnlySpan<int> current, int[] requested)
    {
        long total = ElementCount(current);
        int inferred = -1;
        long known = 1;
        for (int i = 0; i < requested.Length; i++)
        {
            if (requested[i] == -1)
            {
                if (inferred >= 0)
                {
                    throw new ArgumentException($"reshape {Format(current)} to {Format(requested)}: only one axis may be -1");
                }
                inferred = i;
            }
            else if (requested[i] < 0)
            {
                throw new ArgumentException($"reshape {Format(current)} to {Format(requested)}: negative size");
            }
            else
            {
                known *= requested[i];
            }
        }
        var resolved = (int[])requested.Clone();
        if (inferred >= 0)
        {
            if (known == 0 || total % known != 0)
            {
                throw new ArgumentException($"cannot reshape {Format(current)} ({total} elements) to {Format(requested)}");
            }
            resolved[inferred] = (int)(total / known);
        }
        else if (known != total)
        {
            throw new ArgumentException($"cannot reshape {Format(current)} ({total} elements) to {Format(requested)} ({known} elements)");
        }
        return resolved;
    }

    /// <summary>NumPy broadcasting of two shapes; the error names both.</summary>
    public static int[] Broadcast(ReadOnlySpan<int> left, ReadOnlySpan<int> right)
    {
        int rank = Math.Max(left.Length, right.Length);
        var result = new int[rank];
        for (int i = 0; i < rank; i++)
        {
            int l = i - (rank - left.Length) >= 0 ? left[i - (rank - left.Length)] : 1;
            int r = i - (rank - right.Length) >= 0 ? right[i - (rank - right.Length)] : 1;
            if (l != r && l != 1 && r != 1)
            {
                throw new ArgumentException($"shapes {Format(left)} and {Format(right)} cannot be broadcast together (axis {i}: {l} vs {r})");
            }
            result[i] = l == 1 ? r : l;
        }
        return result;
    }
}
