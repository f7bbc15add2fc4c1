namespace Engine.Autograd;

/// <summary>
/// One recorded operation: its inputs, its output, the tensors it saved, and its backward rule. Each operation is a
/// subclass in Functions/, with its forward (a static Apply) and backward side by side.
/// </summary>
public abstract class Function
{
    private readonly List<Tensor> saved = [];

    internal Variable[] Inputs { get; private set; } = [];

    internal Variable? Output { get; private set; }

    public abstract string Name { get; }

    /// <summary>
    /// Gradients of the inputs given the output gradient. Entries for inputs whose <paramref name="needsGrad"/> is false
    /// may be left null (and should not be computed). Returned tensors must have the inputs' shapes.
    /// </summary>
    protected internal abstract Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad);

    /// <summary>Keeps a reference to a tensor for backward; released as soon as this node's backward has run.</summary>
    protected Tensor Save(Tensor tensor)
    {
        var reference = tensor.Share();
        saved.Add(reference);
        return reference;
    }

    internal void ReleaseSaved()
    {
        foreach (var tensor in saved)
        {
            tensor.Dispose();
        }
        saved.Clear();
    }

    /// <summary>True when an operation on these inputs must be recorded: grad mode on, a tape active, and some input needing a gradient.</summary>
    public static bool ShouldRecord(params Variable[] inputs)
    {
        if (!GradMode.IsEnabled || Tape.Current is null)
        {
            return false;
        }
        foreach (var input in inputs)
        {
            if (input.RequiresGrad)
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Wraps the forward result; records this node on the tape when <see cref="ShouldRecord"/> holds, else drops what it saved.</summary>
    protected Variable Finish(Tensor output, params Variable[] inputs)
    {
        if (!ShouldRecord(inputs))
        {
            ReleaseSaved();
            return new Variable(output);
        }
        Inputs = inputs;
        var result = new Variable(output, requiresGrad: true) { Creator = this };
        Output = result;
        Tape.Current!.Record(this);
        return result;
    }
}
