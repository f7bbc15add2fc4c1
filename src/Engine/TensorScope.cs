namespace Engine;

/// <summary>
/// Deterministic ownership for the tensors of one unit of work (a training step, an evaluation batch). Every tensor created
/// while a scope is current belongs to it and is disposed with it, unless <see cref="Keep"/> hands it to the enclosing scope.
/// Large buffers are therefore freed at a known point instead of whenever the GC runs finalizers.
/// </summary>
public sealed class TensorScope : IDisposable
{
    [ThreadStatic] private static TensorScope? current;

    private readonly TensorScope? parent;
    private readonly bool tracking;
    private readonly List<Tensor> owned = [];
    private bool disposed;

    public TensorScope() : this(tracking: true)
    {
    }

    private TensorScope(bool tracking)
    {
        this.tracking = tracking;
        parent = current;
        current = this;
    }

    /// <summary>A scope in which new tensors belong to nobody: for long-lived state (parameters, gradients, optimizer moments) created mid-step.</summary>
    public static TensorScope Untracked() => new(tracking: false);

    internal static TensorScope? Current => current;

    internal static void Adopt(Tensor tensor)
    {
        var scope = current;
        if (scope is { tracking: true })
        {
            tensor.OwnerScope = scope;
            scope.owned.Add(tensor);
        }
    }

    /// <summary>Moves a tensor out of this scope into the enclosing one (or to nobody), so it outlives this scope.</summary>
    public Tensor Keep(Tensor tensor)
    {
        if (tensor.OwnerScope != this)
        {
            return tensor;
        }
        tensor.OwnerScope = null;
        var target = parent;
        while (target is { tracking: false })
        {
            target = target.parent;
        }
        if (target is not null && parent is { tracking: true })
        {
            tensor.OwnerScope = target;
            target.owned.Add(tensor);
        }
        return tensor;
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }
        disposed = true;
        if (current != this)
        {
            throw new InvalidOperationException("tensor scopes must be disposed in the reverse order of their creation, on the thread that created them");
        }
        current = parent;
        foreach (var tensor in owned)
        {
            if (tensor.OwnerScope == this)
            {
                tensor.Dispose();
            }
        }
        owned.Clear();
    }
}
