namespace Engine.Autograd.Functions;

/// <summary>Broadcasting add, sub, mul, div. Gradients are summed back over the broadcast axes.</summary>
internal sealed class BinaryFunction(BinaryOp op, int[] leftShape, int[] rightShape) : Function
{
    private Tensor? left, right;

    public override string Name => op.ToString();

    public static Variable Apply(BinaryOp op, Variable a, Variable b)
    {
        Check.Compatible(op.ToString(), a.Data, b.Data);
        var shape = ShapeMath.Broadcast(a.Shape, b.Shape);
        var result = Tensor.Empty(shape, a.DType, a.Device);
        using (var leftView = a.Data.Expand(shape))
        using (var rightView = b.Data.Expand(shape))
        {
            result.Backend.Binary(op, leftView, rightView, result);
        }
        var function = new BinaryFunction(op, a.Data.ShapeArray(), b.Data.ShapeArray());
        if (op is BinaryOp.Mul or BinaryOp.Div)
        {
            function.left = function.Save(a.Data);
            function.right = function.Save(b.Data);
        }
        return function.Finish(result, a, b);
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var shape = outputGrad.Shape;
        Tensor? leftFull = null, rightFull = null;
        var backend = outputGrad.Backend;
        switch (op)
        {
            case BinaryOp.Add:
                leftFull = needsGrad[0] ? outputGrad : null;
                rightFull = needsGrad[1] ? outputGrad : null;
                break;
            case BinaryOp.Sub:
                leftFull = needsGrad[0] ? outputGrad : null;
                if (needsGrad[1])
                {
                    rightFull = GradientMath.EmptyLike(outputGrad);
                    backend.Affine(outputGrad, -1, 0, rightFull);
                }
                break;
            case BinaryOp.Mul:
                // d(a·b) = g·b, g·a
                if (needsGrad[0])
                {
                    leftFull = GradientMath.EmptyLike(outputGrad);
                    using var rightView = right!.Expand(shape.ToArray());
                    backend.Binary(BinaryOp.Mul, outputGrad, rightView, leftFull);
                }
                if (needsGrad[1])
                {
                    rightFull = GradientMath.EmptyLike(outputGrad);
                    using var leftView = left!.Expand(shape.ToArray());
                    backend.Binary(BinaryOp.Mul, outputGrad, leftView, rightFull);
                }
                break;
            default:
                // d(a/b) = g/b, −g·a/b²
                using (var rightView = right!.Expand(shape.ToArray()))
                {
                    var quotient = GradientMath.EmptyLike(outputGrad);
                    backend.Binary(BinaryOp.Div, outputGrad, rightView, quotient);
                    leftFull = needsGrad[0] ? quotient : null;
                    if (needsGrad[1])
                    {
                        using var leftView = left!.Expand(shape.ToArray());
                        rightFull = GradientMath.EmptyLike(outputGrad);
                        backend.Binary(BinaryOp.Mul, quotient, leftView, rightFull);
                        backend.Binary(BinaryOp.Div, rightFull, rightView, rightFull);
                        backend.Affine(rightFull, -1, 0, rightFull);
                    }
                }
                break;
        }
        return
        [
            leftFull is null ? null : GradientMath.SumToShape(leftFull, leftShape),
            rightFull is null ? null : GradientMath.SumToShape(rightFull, rightShape),
        ];
    }
}
