namespace Engine.Autograd;

/// <summary>
/// A tensor in the autograd graph. Leaves are inputs or <see cref="Parameter"/>s; other variables are outputs of a
/// <see cref="Function"/> recorded on the current <see cref="Tape"/>. Disposing a variable releases its data reference.
/// </summary>
public class Variable : IDisposable
{
    public Variable(Tensor data, bool requiresGrad = false, string? name = null)
    {
        Data = data;
        requiresGradient = requiresGrad;
        Name = name;
    }

    private bool requiresGradient;

    public Tensor Data { get; }

    /// <summary>Accumulated gradient of a leaf that requires one (null until backward reaches it; never allocated for frozen leaves). Settable, to apply gradients computed elsewhere.</summary>
    public Tensor? Grad { get; set; }

    public string? Name { get; set; }

    /// <summary>Whether gradients flow to this variable. Intermediate variables inherit it from their inputs.</summary>
    public virtual bool RequiresGrad
    {
        get => requiresGradient;
        set => requiresGradient = value;
    }

    internal Function? Creator { get; set; }

    public bool IsLeaf => Creator is null;

    public ReadOnlySpan<int> Shape => Data.Shape;

    public int Dim(int axis) => Data.Dim(axis);

    public int Rank => Data.Rank;

    public DType DType => Data.DType;

    public Device Device => Data.Device;

    public override string ToString() => Name is null ? Data.Describe() : $"{Name}: {Data.Describe()}";

    /// <summary>Drops the gradient buffer (frees it; the next backward allocates a fresh one if needed).</summary>
    public void ClearGrad()
    {
        Grad?.Dispose();
        Grad = null;
    }

    public virtual void Dispose()
    {
        Data.Dispose();
        GC.SuppressFinalize(this);
    }

    public static Variable operator +(Variable left, Variable right) => Ops.Add(left, right);

    public static Variable operator -(Variable left, Variable right) => Ops.Sub(left, right);

    public static Variable operator *(Variable left, Variable right) => Ops.Mul(left, right);

    public static Variable operator /(Variable left, Variable right) => Ops.Div(left, right);

    public static Variable operator -(Variable input) => Ops.Neg(input);

    public static Variable operator *(Variable left, double right) => Ops.Affine(left, right, 0);

    public static Variable operator *(double left, Variable right) => Ops.Affine(right, left, 0);

    public static Variable operator +(Variable left, double right) => Ops.Affine(left, 1, right);
}

/// <summary>
/// A trainable (or frozen) weight. <see cref="Trainable"/> may change at every step (IST tunes a different set of layers
/// each step): a frozen parameter gets no gradient buffer, and freezing one frees the buffer it had.
/// </summary>
public sealed class Parameter : Variable
{
    private bool trainable;

    public Parameter(Tensor data, string name, bool trainable = true) : base(data, trainable, name)
    {
        this.trainable = trainable;
    }

    public new string Name => base.Name!;

    public bool Trainable
    {
        get => trainable;
        set
        {
            trainable = value;
            if (!value)
            {
                ClearGrad();
            }
        }
    }

    public override bool RequiresGrad
    {
        get => trainable;
        set => Trainable = value;
    }

    public override void Dispose()
    {
        ClearGrad();
        base.Dispose();
    }
}
