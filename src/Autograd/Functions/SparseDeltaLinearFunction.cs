namespace Engine.Autograd.Functions;

/// <summary>
/// SpIEL's linear layer: y = x (W + Δ)ᵀ with W [out, in] and Δ the k values scatter-added at int32 flat row-major indices.
/// Neither Δ nor a copy of W is formed: around each GEMM that needs W + Δ, the k original entries of W are gathered, the
/// values added in place, and the originals copied back afterwards. Copied, not subtracted: (w + v) − v ≠ w in floating
/// point, and W (the frozen pretrained weight) must come back bit for bit. Backward, with g = ∂L/∂y:
/// dx = g (W + Δ) (the same apply-and-restore), d values[n] = Σ_t g[t, row_n] · x[t, col_n] (sampled at the indices, no
/// dense dW), and dW = gᵀ x only when W itself needs a gradient. W's storage is written during forward and backward, so
/// no other thread may use W while this operation runs.
/// </summary>
internal sealed class SparseDeltaLinearFunction(Action<Tensor, Tensor>? gradientObserver) : Function
{
    private Tensor? input, weight, indices, values;
    private int[] inputShape = [];

    public override string Name => "SparseDeltaLinear";

    public static Variable Apply(Variable x, Variable w, Tensor indices, Variable values, Action<Tensor, Tensor>? gradientObserver)
    {
        const string name = "sparse delta linear";
        Check.Compatible(name, x.Data, w.Data);
        Check.Compatible(name, w.Data, values.Data);
        Check.SameDevice(name, w.Data, indices);
        if (w.Rank != 2 || x.Rank < 1 || x.Dim(-1) != w.Dim(1))
        {
            throw new ArgumentException($"{name}: input {x.Data.Describe()} does not fit weight {w.Data.Describe()} (weight is [out, in]; input's last axis must be in)");
        }
        if (indices.DType != DType.Int32 || indices.Rank != 1 || !values.Shape.SequenceEqual(indices.Shape))
        {
            throw new ArgumentException($"{name}: indices {indices.Describe()} must be int32 [k] and values {values.Data.Describe()} [k], the same k");
        }
        if (!w.Data.IsContiguous)
        {
            throw new ArgumentException($"{name}: weight {w.Data.Describe()} must be contiguous (the values are added into its storage in place)");
        }
        int outFeatures = w.Dim(0), inFeatures = w.Dim(1);
        var function = new SparseDeltaLinearFunction(gradientObserver) { inputShape = x.Data.ShapeArray() };
        using var rows = x.Data.Reshape(-1, inFeatures);
        using var packedValues = values.Data.Contiguous();
        var outputShape = x.Data.ShapeArray();
        outputShape[^1] = outFeatures;
        var result = Tensor.Empty(outputShape, x.DType, x.Device);
        using (var resultRows = result.Reshape(-1, outFeatures))
        using (var weightTransposed = w.Data.Transpose(0, 1))
        using (new DeltaInPlace(w.Data, indices, packedValues))
        {
            result.Backend.MatMul(rows, weightTransposed, resultRows, 1, 0);
        }
        function.input = function.Save(rows);
        function.weight = function.Save(w.Data);
        function.indices = function.Save(indices);
        function.values = function.Save(packedValues);
        return function.Finish(result, x, w, values);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Reshape(-1, weight!.Dim(0));
        var backend = gradient.Backend;
        // SpIEL-AG's regrowth statistics need the layer's (g, x) rows; they live only until this rule returns.
        gradientObserver?.Invoke(gradient, input!);
        Tensor? inputGrad = null, weightGrad = null, valuesGrad = null;
        if (needsGrad[0])
        {
            // dx = g (W + Δ)
            inputGrad = Tensor.Empty([gradient.Dim(0), weight.Dim(1)], gradient.DType, gradient.Device);
            using (new DeltaInPlace(weight, indices!, values!))
            {
                backend.MatMul(gradient, weight, inputGrad, 1, 0);
            }
        }
        if (needsGrad[1])
        {
            // dW = gᵀ x: the gradient of W itself, which Δ does not change.
            using var gradientTransposed = gradient.Transpose(0, 1);
            weightGrad = GradientMath.EmptyLike(weight);
            backend.MatMul(gradientTransposed, input!, weightGrad, 1, 0);
        }
        if (needsGrad[2])
        {
            valuesGrad = GradientMath.EmptyLike(values!);
            backend.SampledWeightGradient(gradient, input!, indices!, valuesGrad, 0);
        }
        return [inputGrad?.Reshape(inputShape), weightGrad, valuesGrad];
    }

    /// <summary>
    /// W + Δ in W's own storage for the lifetime of a using block: the constructor saves W's k entries at the indices and
    /// adds the values; Dispose copies the saved entries back (also when the block throws). Duplicate indices stay exact:
    /// every copy saved for one index holds the same original entry.
    /// </summary>
    private readonly struct DeltaInPlace : IDisposable
    {
        private readonly Tensor weight, indices, originals;

        public DeltaInPlace(Tensor weight, Tensor indices, Tensor values)
        {
            this.weight = weight;
            this.indices = indices;
            originals = Tensor.Empty(indices.Shape, weight.DType, weight.Device);
            weight.Backend.GatherFlat(weight, indices, originals);
            weight.Backend.ScatterAddFlat(weight, indices, values);
        }

        public void Dispose()
        {
            weight.Backend.ScatterFlat(weight, indices, originals);
            originals.Dispose();
        }
    }
}
