using Engine.Autograd.Functions;

namespace Engine.Autograd;

/// <summary>
/// Every differentiable operation. Each records itself on the current <see cref="Tape"/> when an input needs a gradient;
/// forward and backward of each live together in Functions/.
/// </summary>
public static class Ops
{
    public const int IgnoreIndex = -100;

    public static Variable Add(Variable left, Variable right) => BinaryFunction.Apply(BinaryOp.Add, left, right);

    public static Variable Sub(Variable left, Variable right) => BinaryFunction.Apply(BinaryOp.Sub, left, right);

    public static Variable Mul(Variable left, Variable right) => BinaryFunction.Apply(BinaryOp.Mul, left, right);

    public static Variable Div(Variable left, Variable right) => BinaryFunction.Apply(BinaryOp.Div, left, right);

    /// <summary>alpha · x + beta for constants alpha and beta.</summary>
    public static Variable Affine(Variable input, double alpha, double beta) => AffineFunction.Apply(input, alpha, beta);

    public static Variable Neg(Variable input) => UnaryFunction.Apply(UnaryOp.Neg, input);

    public static Variable Exp(Variable input) => UnaryFunction.Apply(UnaryOp.Exp, input);

    public static Variable Log(Variable input) => UnaryFunction.Apply(UnaryOp.Log, input);

    public static Variable Sqrt(Variable input) => UnaryFunction.Apply(UnaryOp.Sqrt, input);

    public static Variable Rsqrt(Variable input) => UnaryFunction.Apply(UnaryOp.Rsqrt, input);

    public static Variable Square(Variable input) => UnaryFunction.Apply(UnaryOp.Square, input);

    public static Variable Relu(Variable input) => UnaryFunction.Apply(UnaryOp.Relu, input);

    public static Variable Sigmoid(Variable input) => UnaryFunction.Apply(UnaryOp.Sigmoid, input);

    public static Variable Silu(Variable input) => UnaryFunction.Apply(UnaryOp.Silu, input);

    /// <summary>GELU, tanh approximation.</summary>
    public static Variable Gelu(Variable input) => UnaryFunction.Apply(UnaryOp.Gelu, input);

    /// <summary>[..., m, k] @ [k, n] or batched [..., m, k] @ [..., k, n].</summary>
    public static Variable MatMul(Variable left, Variable right) => MatMulFunction.Apply(left, right);

    /// <summary>x Wᵀ for a weight stored [out, in].</summary>
    public static Variable Linear(Variable input, Variable weight) => LinearFunction.Apply(input, weight);

    /// <summary>
    /// LoRA-adapted linear layer as one fused operation: x Wᵀ + scale · (dropout(x) Aᵀ) Bᵀ, W [out, in], A [r, in],
    /// B [out, r]; B·A is never formed, forward or backward.
    /// </summary>
    public static Variable LoraLinear(Variable input, Variable weight, Variable loraA, Variable loraB, double scale, double dropout = 0, ulong seed = 0) =>
        LoraLinearFunction.Apply(input, weight, loraA, loraB, scale, dropout, seed);

    /// <summary>
    /// SpIEL's sparse-delta linear layer: x (W + Δ)ᵀ with W [out, in] and Δ the values [k] at int32 flat row-major indices
    /// [k] into W; input [..., in]. Neither a dense Δ nor a copy of W is formed: the values are added into W's storage
    /// around each GEMM and W's original entries copied back, bit for bit (so W must not be used by another thread
    /// meanwhile). The values' gradient is W's gradient sampled at the indices, without the dense dW (which is computed
    /// only when W itself needs a gradient). <paramref name="gradientObserver"/>, when given, is called during backward with
    /// contiguous views (output gradient rows [T, out], input rows [T, in]), valid only during the call and freed with the
    /// backward's temporaries (create long-lived state under <see cref="TensorScope.Untracked"/>): SpIEL-AG's regrowth statistics.
    /// </summary>
    public static Variable SparseDeltaLinear(Variable input, Variable weight, Tensor indices, Variable values, Action<Tensor, Tensor>? gradientObserver = null) =>
        SparseDeltaLinearFunction.Apply(input, weight, indices, values, gradientObserver);

    /// <summary>Sum over the given axes (all axes when none).</summary>
    public static Variable Sum(Variable input, int[]? axes = null, bool keepDims = false) => SumFunction.Apply(input, axes, keepDims);

    public static Variable Mean(Variable input, int[]? axes = null, bool keepDims = false)
    {
        var reduceAxes = axes is null || axes.Length == 0 ? Enumerable.Range(0, input.Rank).ToArray() : axes;
        long count = reduceAxes.Aggregate(1L, (product, axis) => product * input.Dim(axis));
        using var total = Sum(input, axes, keepDims);
        return Affine(total, 1.0 / count, 0);
    }

    /// <summary>Maximum over the last axis.</summary>
    public static Variable Max(Variable input) => MaxFunction.Apply(input);

    public static Variable Reshape(Variable input, params int[] shape) => ReshapeFunction.Apply(input, shape);

    public static Variable Permute(Variable input, params int[] axes) => PermuteFunction.Apply(input, axes);

    public static Variable Transpose(Variable input, int axisA, int axisB)
    {
        var axes = Enumerable.Range(0, input.Rank).ToArray();
        int a = input.Data.NormalizeAxis(axisA), b = input.Data.NormalizeAxis(axisB);
        (axes[a], axes[b]) = (axes[b], axes[a]);
        return PermuteFunction.Apply(input, axes);
    }

    public static Variable Narrow(Variable input, int axis, int start, int length) => NarrowFunction.Apply(input, axis, start, length);

    public static Variable Concat(IReadOnlyList<Variable> parts, int axis) => ConcatFunction.Apply(parts, axis);

    /// <summary>Rows of <paramref name="table"/> at int32/int64 <paramref name="indices"/>; output shape is indices' shape + row shape.</summary>
    public static Variable IndexSelect(Variable table, Tensor indices) => IndexSelectFunction.Apply(table, indices);

    /// <summary>Token embedding lookup: rows of the [vocabulary, hidden] table.</summary>
    public static Variable Embedding(Variable table, Tensor tokenIds) => IndexSelectFunction.Apply(table, tokenIds);

    public static Variable Softmax(Variable input) => SoftmaxFunction.Apply(input, log: false);

    public static Variable LogSoftmax(Variable input) => SoftmaxFunction.Apply(input, log: true);

    /// <summary>Mean cross-entropy of logits [..., vocabulary] against int32 targets, skipping targets equal to <paramref name="ignoreIndex"/>.</summary>
    public static Variable CrossEntropy(Variable logits, Tensor targets, int ignoreIndex = IgnoreIndex) => CrossEntropyFunction.Apply(logits, targets, ignoreIndex);

    public static Variable RmsNorm(Variable input, Variable weight, double epsilon) => RmsNormFunction.Apply(input, weight, epsilon);

    /// <summary>Rotary embedding ("rotate half") on [batch, heads, tokens, headDim] at int32 positions [tokens].</summary>
    public static Variable Rope(Variable input, Tensor positions, double theta) => RopeFunction.Apply(input, positions, theta);

    /// <summary>Causal grouped-query attention; q [batch, qHeads, tokens, headDim], k/v [batch, kvHeads, keyTokens, headDim].</summary>
    public static Variable CausalAttention(Variable query, Variable key, Variable value, double? scale = null) =>
        AttentionFunction.Apply(query, key, value, scale ?? 1.0 / Math.Sqrt(query.Dim(-1)));

    /// <summary>Inverted dropout; the identity when probability is 0.</summary>
    public static Variable Dropout(Variable input, double probability, ulong seed) =>
        probability == 0 ? AffineFunction.Apply(input, 1, 0) : DropoutFunction.Apply(input, probability, seed);

    public static Variable GatherFlat(Variable source, Tensor indices) => GatherFlatFunction.Apply(source, indices);

    public static Variable ScatterAddFlat(Variable dense, Tensor indices, Variable values) => ScatterAddFlatFunction.Apply(dense, indices, values);

    /// <summary>
    /// VB-LoRA's top-k softmax admixture: for each row of logits [..., N], softmax over its k largest logits only, and the
    /// weighted sum of those rows of the bank [N, L]; output [..., L]. Among equal logits the lower index is selected.
    /// Logits may be −inf (weight 0) as long as each row has a finite one; NaN is not supported. Requires 1 ≤ topK ≤ N.
    /// </summary>
    public static Variable TopKAdmixture(Variable logits, Variable bank, int topK) => TopKAdmixtureFunction.Apply(logits, bank, topK);
}
