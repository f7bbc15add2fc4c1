namespace Engine.Autograd.Functions;

/// <summary>
/// The LoRA-adapted linear layer as one operation: y = x Wᵀ + s · (dropout(x) Aᵀ) Bᵀ with W [out, in], A [r, in],
/// B [out, r]. B·A is never formed. Forward keeps x and the small x̃Aᵀ [n, r]; the dropout mask is regenerated from its
/// seed in backward, so x̃ is not stored. Backward, with g = ∂L/∂y and gB = g B [n, r]:
/// dA = s · gBᵀ x̃, dB = s · gᵀ (x̃ Aᵀ), dx = g W + s · dropoutᵀ(gB A), dW = gᵀ x (only when W trains).
/// The rank-wide products are computed transposed (P = x̃Aᵀ as A x̃ᵀ [r, n], gB as Bᵀgᵀ [r, n], dB as (Pᵀ g)ᵀ): a GEMM whose
/// output has r ≤ 16 columns leaves most of the SGEMM micro-kernel's 64-wide tile idle, while r rows fill its 6-row tiles.
/// </summary>
internal sealed class LoraLinearFunction(double scale, double dropout, ulong seed) : Function
{
    private Tensor? input, weight, loraA, loraB, projectedTransposed;
    private int[] inputShape = [];

    public override string Name => "LoraLinear";

    public static Variable Apply(Variable x, Variable w, Variable a, Variable b, double scale, double dropout, ulong seed)
    {
        foreach (var operand in new[] { w, a, b })
        {
            Check.Compatible("lora linear", x.Data, operand.Data);
        }
        int outFeatures = w.Dim(0), inFeatures = w.Dim(1), rank = a.Dim(0);
        if (w.Rank != 2 || a.Rank != 2 || b.Rank != 2 || x.Dim(-1) != inFeatures || a.Dim(1) != inFeatures || b.Dim(0) != outFeatures || b.Dim(1) != rank)
        {
            throw new ArgumentException($"lora linear: shapes do not fit: input {x.Data.Describe()}, weight {w.Data.Describe()} [out, in], " +
                $"A {a.Data.Describe()} [r, in], B {b.Data.Describe()} [out, r]");
        }
        var function = new LoraLinearFunction(scale, dropout, seed) { inputShape = x.Data.ShapeArray() };
        using var rows = x.Data.Reshape(-1, inFeatures);
        var backend = rows.Backend;
        var outputShape = x.Data.ShapeArray();
        outputShape[^1] = outFeatures;
        var result = Tensor.Empty(outputShape, x.DType, x.Device);
        using var resultRows = result.Reshape(-1, outFeatures);
        using (var weightTransposed = w.Data.Transpose(0, 1))
        {
            backend.MatMul(rows, weightTransposed, resultRows, 1, 0);
        }
        using var dropped = function.DropOut(rows);
        using var projectedTransposed = Tensor.Empty([rank, rows.Dim(0)], x.DType, x.Device);
        using (var droppedTransposed = dropped.Transpose(0, 1))
        {
            backend.MatMul(a.Data, droppedTransposed, projectedTransposed, 1, 0);
        }
        using (var projected = projectedTransposed.Transpose(0, 1))
        using (var bTransposed = b.Data.Transpose(0, 1))
        {
            // y += s · (x̃ Aᵀ) Bᵀ, accumulated into the base output (beta = 1).
            backend.MatMul(projected, bTransposed, resultRows, scale, 1);
        }
        function.input = function.Save(rows);
        function.weight = function.Save(w.Data);
        function.loraA = function.Save(a.Data);
        function.loraB = function.Save(b.Data);
        function.projectedTransposed = function.Save(projectedTransposed);
        return function.Finish(result, x, w, a, b);
    }

    /// <summary>x̃: the adapter's dropped-out input (a shared reference to x when dropout is off).</summary>
    private Tensor DropOut(Tensor rows)
    {
        if (dropout == 0)
        {
            return rows.Share();
        }
        var dropped = Tensor.Empty(rows.Shape, rows.DType, rows.Device);
        rows.Backend.Dropout(rows, dropout, seed, dropped);
        return dropped;
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        using var gradient = outputGrad.Reshape(-1, weight!.Dim(0));
        var backend = gradient.Backend;
        int tokens = gradient.Dim(0), rank = loraA!.Dim(0);
        using var gradientBTransposed = Tensor.Empty([rank, tokens], gradient.DType, gradient.Device);
        using (var bTransposed = loraB!.Transpose(0, 1))
        using (var gradientTransposed = gradient.Transpose(0, 1))
        {
            backend.MatMul(bTransposed, gradientTransposed, gradientBTransposed, 1, 0);
        }
        using var gradientB = gradientBTransposed.Transpose(0, 1);
        Tensor? inputGrad = null, weightGrad = null, aGrad = null, bGrad = null;
        if (needsGrad[0])
        {
            inputGrad = Tensor.Empty([tokens, weight.Dim(1)], gradient.DType, gradient.Device);
            backend.MatMul(gradient, weight, inputGrad, 1, 0);
            if (dropout == 0)
            {
                // dx += s · gB A, accumulated by the GEMM itself (beta = 1): no temporary, no extra pass.
                backend.MatMul(gradientB, loraA, inputGrad, scale, 1);
            }
            else
            {
                using var adapterGrad = Tensor.Empty(inputGrad.Shape, gradient.DType, gradient.Device);
                backend.MatMul(gradientB, loraA, adapterGrad, scale, 0);
                // The dropout mask is a function of (seed, index): applying dropout to the gradient is its transpose.
                using var maskedGrad = DropOut(adapterGrad);
                backend.Binary(BinaryOp.Add, inputGrad, maskedGrad, inputGrad);
            }
        }
        if (needsGrad[1])
        {
            using var gradientTransposed = gradient.Transpose(0, 1);
            weightGrad = Tensor.Empty(weight.Shape, gradient.DType, gradient.Device);
            backend.MatMul(gradientTransposed, input!, weightGrad, 1, 0);
        }
        if (needsGrad[2])
        {
            using var dropped = DropOut(input!);
            aGrad = Tensor.Empty(loraA.Shape, gradient.DType, gradient.Device);
            backend.MatMul(gradientBTransposed, dropped, aGrad, scale, 0);
        }
        if (needsGrad[3])
        {
            using var bGradTransposed = Tensor.Empty([rank, weight.Dim(0)], gradient.DType, gradient.Device);
            backend.MatMul(projectedTransposed!, gradient, bGradTransposed, scale, 0);
            using var bGradView = bGradTransposed.Transpose(0, 1);
            bGrad = bGradView.Contiguous();
        }
        return [inputGrad?.Reshape(inputShape), weightGrad, aGrad, bGrad];
    }
}
