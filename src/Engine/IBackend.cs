namespace Engine;

public enum UnaryOp
{
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Square,
    Relu,
    Sigmoid,
    Silu,
    /// <summary>GELU, tanh approximation (Hugging Face "gelu_pytorch_tanh" / "gelu_new").</summary>
    Gelu,
}

public enum BinaryOp
{
    Add,
    Sub,
    Mul,
    Div,
}

public enum RandomDistribution
{
    Uniform,
    Normal,
}

/// <summary>
/// The operations autograd calls. Every implementation computes the same thing within the tolerances the conformance
/// suite states. Outputs are preallocated by the caller; unless a method says "accumulates", it overwrites its output.
/// Floating-point kernels accept float32 and float64 (float64 exists for gradient checks); bfloat16 is storage only and
/// is converted by <see cref="Copy"/>.
/// </summary>
public interface IBackend
{
    Device Device { get; }

    // ------------------------------------------------------------ memory
    Storage Allocate(long byteLength);

    void Upload(ReadOnlySpan<byte> source, Storage destination, long destinationByteOffset);

    void Download(Storage source, long sourceByteOffset, Span<byte> destination);

    /// <summary>Bytes currently allocated and the high-water mark since the last <see cref="ResetPeakMemory"/>.</summary>
    (long Current, long Peak) MemoryInUse { get; }

    void ResetPeakMemory();

    // ------------------------------------------------------------ layout and fill
    /// <summary>destination = source, same shape, any strides; converts between float dtypes (bfloat16 rounds to nearest even) and between integer dtypes.</summary>
    void Copy(Tensor source, Tensor destination);

    void Fill(Tensor destination, double value);

    /// <summary>Counter-based (Philox4x32-10) random values: element i of a contiguous destination depends only on (seed, i).</summary>
    void FillRandom(Tensor destination, RandomDistribution distribution, double first, double second, ulong seed);

    // ------------------------------------------------------------ elementwise
    /// <summary>result = left op right; left and right already broadcast to result's shape (stride-0 axes allowed).</summary>
    void Binary(BinaryOp op, Tensor left, Tensor right, Tensor result);

    /// <summary>result = alpha * input + beta (a fused scale and shift).</summary>
    void Affine(Tensor input, double alpha, double beta, Tensor result);

    void Unary(UnaryOp op, Tensor input, Tensor result);

    /// <summary>inputGrad = outputGrad · op'(input); <paramref name="output"/> is op(input), used where the derivative is cheaper from it.</summary>
    void UnaryBackward(UnaryOp op, Tensor input, Tensor output, Tensor outputGrad, Tensor inputGrad);

    // ------------------------------------------------------------ reductions
    /// <summary>Sums input over every axis where result has size 1 and input does not (result has input's rank).</summary>
    void Sum(Tensor input, Tensor result);

    /// <summary>Maximum over the last axis: result and argmax (int32) have input's shape without that axis. Ties take the first index.</summary>
    void MaxLastAxis(Tensor input, Tensor result, Tensor argmax);

    /// <summary>inputGrad[..., argmax[...]] += outputGrad[...]; other elements unchanged. Accumulates.</summary>
    void MaxLastAxisBackward(Tensor argmax, Tensor outputGrad, Tensor inputGrad);

    /// <summary>
    /// The flat indices of the k largest entries of a contiguous float tensor (by |score| when <paramref name="absolute"/>),
    /// written to int32 resultIndices [k] in ascending index order. Ties go to the lower index (−0 and +0 are equal).
    /// −inf (with absolute = false) ranks below every other value, so it can exclude positions; when fewer than k entries
    /// are above −inf, the lowest-index −inf entries fill the remaining places. NaN is rejected. Requires 1 ≤ k ≤ the
    /// element count. A partial selection in linear time (radix select on the ordered bits), not a sort.
    /// </summary>
    void TopKIndices(Tensor scores, int k, bool absolute, Tensor resultIndices);

    /// <summary>Softmax (or log-softmax) over the last axis of a contiguous input.</summary>
    void Softmax(Tensor input, Tensor result, bool log);

    void SoftmaxBackward(Tensor output, Tensor outputGrad, Tensor inputGrad, bool log);

    /// <summary>
    /// Per-row cross-entropy of logits [rows, vocab] against int32 targets [rows], fused with log-softmax. Rows whose target is
    /// <paramref name="ignoreIndex"/> get loss 0 and weight 0; other rows weight 1. logSumExp [rows] is kept for backward.
    /// </summary>
    void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor rowLoss, Tensor rowWeight, Tensor logSumExp);

    /// <summary>logitsGrad = (softmax(logits) − onehot(target)) · lossScale for counted rows, 0 for ignored rows. lossScale is a one-element tensor.</summary>
    void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor logSumExp, Tensor lossScale, Tensor logitsGrad);

    // ------------------------------------------------------------ linear algebra
    /// <summary>
    /// result = alpha · op(left) · op(right) + beta · result for rank-2 operands or rank-3 batches (batch axis 0).
    /// Each matrix must have unit stride in one of its two axes; transposition is read from the strides, so transposed views cost no copy.
    /// </summary>
    void MatMul(Tensor left, Tensor right, Tensor result, double alpha, double beta);

    /// <summary>
    /// A linear layer's weight gradient sampled at flat indices (an SDDMM), without forming the dense [out, in] gradient:
    /// for outputGrad [T, out] and input [T, in] (contiguous, T tokens) and int32 row-major indices [k] into an [out, in]
    /// matrix, result[n] = beta · result[n] + Σ_t outputGrad[t, indices[n] / in] · input[t, indices[n] % in].
    /// beta = 0 overwrites (result's old contents, even NaN, are ignored); beta = 1 accumulates (statistics over micro-batches).
    /// </summary>
    void SampledWeightGradient(Tensor outputGrad, Tensor input, Tensor indices, Tensor result, double beta);

    // ------------------------------------------------------------ indexing
    /// <summary>result[i, ...] = source[indices[i], ...] (rows of a contiguous source).</summary>
    void IndexSelect(Tensor source, Tensor indices, Tensor result);

    /// <summary>destination[indices[i], ...] += source[i, ...]. Accumulates, deterministic (duplicate indices summed in order).</summary>
    void IndexAdd(Tensor destination, Tensor indices, Tensor source);

    /// <summary>result[i] = source.flat[indices[i]] over a contiguous source.</summary>
    void GatherFlat(Tensor source, Tensor indices, Tensor result);

    /// <summary>destination.flat[indices[i]] += values[i]. Accumulates, deterministic.</summary>
    void ScatterAddFlat(Tensor destination, Tensor indices, Tensor values);

    /// <summary>
    /// destination.flat[indices[i]] = values[i] (set, not add) over a contiguous destination; int32 or int64 indices, all
    /// checked against the destination's size before anything is written. With duplicate indices, which of their values
    /// lands is unspecified (the writes run in parallel).
    /// </summary>
    void ScatterFlat(Tensor destination, Tensor indices, Tensor values);

    /// <summary>
    /// VB-LoRA's top-k softmax admixture over contiguous logits [..., N] (S rows) and a bank [N, L]: for each row s,
    /// (v, idx) = top-k of logits[s]; w = softmax(v) over those k only; result[s] = Σ_j w_j · bank[idx_j]. result has the
    /// logits' leading shape + [L]. The selection is saved for backward in selectedIndices (int32 [S, k]) and
    /// selectedWeights ([S, k], the logits' dtype), ordered by descending logit.
    /// Tie rule: among equal logits the lower index wins, and equal selected logits are ordered by ascending index.
    /// Logits may be −inf (a top-k-only adapter loads them as log(w) at the kept indices and −inf elsewhere); a selected
    /// −inf gets weight 0, and a row with no finite logit is an error. NaN and +inf logits are not supported.
    /// Requires 1 ≤ <paramref name="topK"/> ≤ N.
    /// </summary>
    void TopKAdmixture(Tensor logits, Tensor bank, int topK, Tensor result, Tensor selectedIndices, Tensor selectedWeights);

    /// <summary>
    /// Backward of <see cref="TopKAdmixture"/> from its saved selection. With g = outputGrad[s] and c_j = g · bank[idx_j]:
    /// logitsGrad[s, idx_j] = w_j (c_j − Σ_l w_l c_l) and 0 at every other entry (logitsGrad, [..., N], is overwritten);
    /// bankGrad[idx_j] += w_j · g over every row (accumulates, deterministic: rows are summed in order). Either gradient may be null.
    /// </summary>
    void TopKAdmixtureBackward(Tensor bank, Tensor selectedIndices, Tensor selectedWeights, Tensor outputGrad, Tensor? logitsGrad, Tensor? bankGrad);

    // ------------------------------------------------------------ transformer blocks
    /// <summary>result = input / rms(input) · weight over the last axis; inverseRms [rows] kept for backward.</summary>
    void RmsNorm(Tensor input, Tensor weight, double epsilon, Tensor result, Tensor inverseRms);

    /// <summary>inputGrad overwritten; weightGrad (when not null) accumulates.</summary>
    void RmsNormBackward(Tensor input, Tensor weight, Tensor inverseRms, Tensor outputGrad, Tensor inputGrad, Tensor? weightGrad);

    /// <summary>
    /// Rotary embedding, "rotate half" layout (pairs i and i + headDim/2), on input [batch, heads, tokens, headDim] with
    /// int32 positions [tokens]. <paramref name="inverse"/> rotates by the negative angle (the backward pass).
    /// </summary>
    void Rope(Tensor input, Tensor positions, double theta, bool inverse, Tensor result);

    /// <summary>
    /// Causal attention with grouped-query heads: q [batch, qHeads, queryLen, headDim], k and v [batch, kvHeads, keyLen, headDim],
    /// query row i at absolute position i + keyLen − queryLen. output like q; logSumExp [batch, qHeads, queryLen].
    /// </summary>
    void AttentionForward(Tensor query, Tensor key, Tensor value, double scale, Tensor output, Tensor logSumExp);

    void AttentionBackward(Tensor query, Tensor key, Tensor value, Tensor output, Tensor logSumExp, Tensor outputGrad, double scale,
        Tensor queryGrad, Tensor keyGrad, Tensor valueGrad);

    /// <summary>
    /// result = input · mask / (1 − p), mask[i] = uniform(seed, i) ≥ p. The mask is regenerated from the seed for backward
    /// (call again with the output gradient as input), so it is never stored.
    /// </summary>
    void Dropout(Tensor input, double probability, ulong seed, Tensor result);

    // ------------------------------------------------------------ optimizers
    /// <summary>Σ x² of a float tensor into a one-element tensor (global-norm clipping), accumulated in float64 on the CPU.</summary>
    void SumOfSquares(Tensor input, Tensor result);

    /// <summary>
    /// One AdamW step in place, exactly as PyTorch's torch.optim.AdamW: p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g;
    /// v ← β2·v + (1 − β2)·g²; p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + ε).
    /// </summary>
    void AdamWStep(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, AdamWStepSettings settings);

    /// <summary>
    /// <see cref="AdamWStep"/> with a step count per element (SpIEL-AG's slots, whose moments were seeded from statistics
    /// gathered before they became active): age is an int32 tensor of the parameter's shape, and for each element
    /// age ← age + 1, then the bias corrections are 1 − β1^age and 1 − β2^age. <see cref="AdamWStepSettings.Step"/> is ignored.
    /// Same formula and order as AdamWStep otherwise, so equal ages give the same bits. Ages must be ≥ 0 before the step.
    /// </summary>
    void AdamWAgedStep(Tensor parameter, Tensor gradient, Tensor firstMoment, Tensor secondMoment, Tensor age, AdamWStepSettings settings);

    /// <summary>
    /// One SM3 step on the k active entries of an [out, in] matrix (SpIEL-MA): values, gradient and int32 row-major indices
    /// are [k]; rowAccumulator [out] and columnAccumulator [in] (= <paramref name="inFeatures"/>) have the values' dtype and
    /// start at zero (the caller's job). With r_n = indices[n] / in and c_n = indices[n] % in, from the accumulators as they
    /// were before this step: ν_n = min(row[r_n], col[c_n]) + g_n²; then row[r] = max(row[r], max of ν_n over entries in
    /// row r), col[c] likewise, and values[n] −= lr · g_n / √(ν_n + ε). Independent of the order of the entries, deterministic.
    /// </summary>
    void Sm3SparseStep(Tensor values, Tensor gradient, Tensor indices, int inFeatures, Tensor rowAccumulator, Tensor columnAccumulator, double learningRate, double epsilon);
}

/// <summary>Hyperparameters of one AdamW update; <see cref="Step"/> is the 1-based step count of this parameter (bias correction).</summary>
public readonly record struct AdamWStepSettings(double LearningRate, double Beta1, double Beta2, double Epsilon, double WeightDecay, long Step);
