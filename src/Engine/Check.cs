namespace Engine;

/// <summary>Operand checks whose messages name every operand's shape, dtype and device.</summary>
public static class Check
{
    public static void SameDevice(string operation, Tensor left, Tensor right)
    {
        if (left.Device != right.Device)
        {
            throw new ArgumentException($"{operation}: operands are on different devices: {left.Describe()} and {right.Describe()}; copy one with To(device)");
        }
    }

    public static void SameDType(string operation, Tensor left, Tensor right)
    {
        if (left.DType != right.DType)
        {
            throw new ArgumentException($"{operation}: operand dtypes differ: {left.Describe()} and {right.Describe()}");
        }
    }

    public static void SameShape(string operation, Tensor left, Tensor right)
    {
        if (!left.Shape.SequenceEqual(right.Shape))
        {
            throw new ArgumentException($"{operation}: shapes differ: {left.Describe()} and {right.Describe()}");
        }
    }

    /// <summary>Same device and dtype: the usual precondition of a binary operation.</summary>
    public static void Compatible(string operation, Tensor left, Tensor right)
    {
        SameDevice(operation, left, right);
        SameDType(operation, left, right);
    }

    public static void FloatingPoint(string operation, Tensor tensor)
    {
        if (tensor.DType is not (DType.Float32 or DType.Float64))
        {
            throw new ArgumentException($"{operation}: needs a float32 or float64 tensor, got {tensor.Describe()}");
        }
    }

    public static void Index(string operation, Tensor tensor)
    {
        if (tensor.DType is not (DType.Int32 or DType.Int64))
        {
            throw new ArgumentException($"{operation}: indices must be int32 or int64, got {tensor.Describe()}");
        }
    }

    public static void Rank(string operation, Tensor tensor, int rank)
    {
        if (tensor.Rank != rank)
        {
            throw new ArgumentException($"{operation}: expected a rank-{rank} tensor, got {tensor.Describe()}");
        }
    }

    /// <summary>Operands of a top-k admixture: logits [..., N], a bank [N, L] and 1 ≤ k ≤ N.</summary>
    public static void TopKAdmixture(string operation, Tensor logits, Tensor bank, int topK)
    {
        if (bank.Rank != 2 || logits.Rank < 1 || logits.Dim(-1) != bank.Dim(0))
        {
            throw new ArgumentException($"{operation}: logits {logits.Describe()} must be [..., N] for a bank {bank.Describe()} of shape [N, L]");
        }
        if (topK < 1 || topK > bank.Dim(0))
        {
            throw new ArgumentException($"{operation}: k = {topK} must be between 1 and N = {bank.Dim(0)} (the bank's vector count); logits {logits.Describe()}, bank {bank.Describe()}");
        }
    }

    public static void Shape(string operation, Tensor tensor, ReadOnlySpan<int> expected, string role)
    {
        if (!tensor.Shape.SequenceEqual(expected))
        {
            throw new ArgumentException($"{operation}: {role} must have shape {ShapeMath.Format(expected)}, got {tensor.Describe()}");
        }
    }
}
