namespace Engine.Autograd;

/// <summary>
/// Records operations in execution order; <see cref="Backward"/> walks them in reverse. Only operations with an input
/// that needs a gradient are recorded, so backward does no work for parts of the graph that lead to no trainable
/// parameter (frozen lower layers cost nothing). Intermediate gradients and saved tensors are freed node by node.
/// </summary>
public sealed class Tape : IDisposable
{
    [ThreadStatic] private static Tape? current;

    private readonly Tape? parent;
    private readonly List<Function> nodes = [];
    private bool disposed;

    public Tape()
    {
        parent = current;
        current = this;
    }

    public static Tape? Current => current;

    /// <summary>Operations recorded so far.</summary>
    public int RecordedCount => nodes.Count;

    /// <summary>Backward rules executed by the last <see cref="Backward"/> (for tests that check no work happens below frozen layers).</summary>
    public int BackwardExecutedCount { get; private set; }

    /// <summary>Names of the recorded operations, in order.</summary>
    public IReadOnlyList<string> RecordedOperations => nodes.Select(node => node.Name).ToArray();

    internal void Record(Function node)
    {
        if (disposed)
        {
            throw new ObjectDisposedException(nameof(Tape));
        }
        nodes.Add(node);
    }

    /// <summary>
    /// Back-propagates from a scalar (or from any output with an explicit <paramref name="outputGrad"/>), accumulating
    /// into <see cref="Variable.Grad"/> of every leaf that requires a gradient. The tape is consumed: its nodes are released.
    /// </summary>
    public void Backward(Variable output, Tensor? outputGrad = null)
    {
        if (output.Creator is null || !nodes.Contains(output.Creator))
        {
            throw new InvalidOperationException($"backward: {output} was not produced by an operation recorded on this tape (is it frozen, or computed under NoGrad?)");
        }
        if (outputGrad is null && output.Data.ElementCount != 1)
        {
            throw new ArgumentException($"backward: {output} is not a scalar; pass its gradient explicitly");
        }
        // Gradients outlive any scope the caller has open; every intermediate one is disposed explicitly below.
        using var untracked = TensorScope.Untracked();
        using var noGrad = GradMode.NoGrad();
        var pending = new Dictionary<Variable, Tensor>(ReferenceEqualityComparer.Instance)
        {
            [output] = outputGrad?.Contiguous() ?? Tensor.Full(output.Shape, 1.0, output.DType, output.Device),
        };
        BackwardExecutedCount = 0;
        for (int index = nodes.Count - 1; index >= 0; index--)
        {
            var node = nodes[index];
            if (!pending.Remove(node.Output!, out var gradient))
            {
                node.ReleaseSaved();
                continue;
            }
            var needsGrad = node.Inputs.Select(input => input.RequiresGrad).ToArray();
            var inputGrads = new Tensor?[node.Inputs.Length];
            using (var nodeScope = new TensorScope())
            {
                // Temporaries of the rule die with nodeScope; the returned gradients are kept, each as its own reference.
                var returned = node.Backward(gradient, needsGrad);
                for (int i = 0; i < returned.Length; i++)
                {
                    if (returned[i] is { } inputGrad)
                    {
                        inputGrads[i] = nodeScope.Keep(inputGrad.Share());
                    }
                }
            }
            BackwardExecutedCount++;
            gradient.Dispose();
            node.ReleaseSaved();
            for (int i = 0; i < node.Inputs.Length; i++)
            {
                var inputGrad = inputGrads[i];
                if (inputGrad is null)
                {
                    continue;
                }
                if (!needsGrad[i])
                {
                    inputGrad.Dispose();
                    continue;
                }
                var input = node.Inputs[i];
                if (!inputGrad.Shape.SequenceEqual(input.Shape))
                {
                    throw new InvalidOperationException($"backward of {node.Name} returned a gradient {inputGrad.Describe()} for input {i} of shape {input.Data.ShapeString}");
                }
                if (input.IsLeaf)
                {
                    input.Grad = Accumulate(input.Grad, inputGrad);
                }
                else
                {
                    pending[input] = Accumulate(pending.GetValueOrDefault(input), inputGrad);
                }
            }
        }
        foreach (var leftover in pending.Values)
        {
            leftover.Dispose();
        }
        nodes.Clear();
    }

    /// <summary>existing + addition into a fresh buffer: either operand may share storage with another gradient, so neither is written.</summary>
    private static Tensor Accumulate(Tensor? existing, Tensor addition)
    {
        if (existing is null)
        {
            // Leaf gradients are handed to optimizers, which expect packed buffers.
            return addition.IsContiguous ? addition : Pack(addition);
        }
        var sum = Tensor.Empty(existing.Shape, existing.DType, existing.Device);
        sum.Backend.Binary(BinaryOp.Add, existing, addition, sum);
        existing.Dispose();
        addition.Dispose();
        return sum;
    }

    private static Tensor Pack(Tensor view)
    {
        var packed = view.Clone();
        view.Dispose();
        return packed;
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        foreach (var node in nodes)
        {
            node.ReleaseSaved();
        }
        nodes.Clear();
        if (current == this)
        {
            current = parent;
        }
    }
}
