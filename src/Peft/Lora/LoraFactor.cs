using Engine.Autograd;

namespace Engine.Peft.Lora;

/// <summary>One LoRA matrix (A or B) as the layer uses it: a plain parameter, or LoRA-SP's split into frozen and trainable entries.</summary>
internal abstract class LoraFactor
{
    /// <summary>The full matrix as a graph node (gradients reach only trainable entries).</summary>
    public abstract Variable Compose();

    /// <summary>The full matrix's current value, as a new tensor.</summary>
    public abstract Tensor Value();

    /// <summary>Overwrites the full matrix (loading a file).</summary>
    public abstract void SetValue(Tensor full);

    /// <summary>Parameters the optimizer updates.</summary>
    public abstract IReadOnlyList<Parameter> Trainable { get; }

    /// <summary>Parameters a training checkpoint stores.</summary>
    public abstract IReadOnlyList<Parameter> State { get; }
}

internal sealed class DenseFactor(Parameter parameter) : LoraFactor
{
    public Parameter Parameter { get; } = parameter;

    public override Variable Compose() => Parameter;

    public override Tensor Value() => Parameter.Data.Clone();

    public override void SetValue(Tensor full) => Parameter.Data.CopyFrom(full);

    public override IReadOnlyList<Parameter> Trainable => [Parameter];

    public override IReadOnlyList<Parameter> State => [Parameter];
}

/// <summary>
/// LoRA-SP's factor: <see cref="Frozen"/> holds the full matrix with the trainable entries zeroed, <see cref="Values"/> the
/// trainable entries only, at <see cref="Indices"/> (flat, ascending). The matrix is frozen + scatter(values), so the
/// gradient reaching the optimizer is that of the trainable entries alone and its moments have their size, not the matrix's.
/// </summary>
internal sealed class SplitFactor : LoraFactor, IDisposable
{
    private Tensor indices;

    public SplitFactor(string name, Tensor initial, int[] trainableIndices)
    {
        Frozen = new Parameter(initial.Clone(), name + ".frozen", trainable: false);
        Values = new Parameter(Tensor.Empty([trainableIndices.Length], initial.DType, initial.Device), name + ".trainable");
        indices = Tensor.FromArray<int>(trainableIndices, [trainableIndices.Length], initial.Device);
        Split(initial);
    }

    public Parameter Frozen { get; }

    public Parameter Values { get; }

    public Tensor Indices => indices;

    /// <summary>Whether every frozen entry is zero (LoRA-SP's B until a redraw freezes trained entries).</summary>
    public bool FrozenIsZero { get; private set; }

    public override Variable Compose() => Ops.ScatterAddFlat(Frozen, indices, Values);

    public override Tensor Value()
    {
        var full = Frozen.Data.Clone();
        full.Backend.ScatterAddFlat(full, indices, Values.Data);
        return full;
    }

    public override void SetValue(Tensor full) => Split(full);

    /// <summary>Moves the trainable set to <paramref name="trainableIndices"/> keeping the matrix's value (a mask redraw).</summary>
    public void Redraw(int[] trainableIndices)
    {
        using var full = Value();
        ReplaceIndices(trainableIndices);
        Split(full);
    }

    /// <summary>Points at another trainable set without moving values (after a checkpoint restored an already split state).</summary>
    public void ReplaceIndices(int[] trainableIndices)
    {
        if (trainableIndices.Length != Values.Data.ElementCount)
        {
            throw new InvalidOperationException($"{Values.Name}: a mask redraw must keep the trainable count ({Values.Data.ElementCount}), got {trainableIndices.Length}");
        }
        using (TensorScope.Untracked())
        {
            indices.Dispose();
            indices = Tensor.FromArray<int>(trainableIndices, [trainableIndices.Length], Frozen.Device);
        }
    }

    private void Split(Tensor full)
    {
        var backend = full.Backend;
        backend.GatherFlat(full, indices, Values.Data);
        Frozen.Data.CopyFrom(full);
        using var negated = Tensor.Empty(Values.Data.Shape, full.DType, full.Device);
        backend.Affine(Values.Data, -1, 0, negated);
        // Subtracting the values at their own indices zeroes them exactly (x + (−x) = 0 in floating point).
        backend.ScatterAddFlat(Frozen.Data, indices, negated);
        RecheckFrozen();
    }

    /// <summary>Recomputes <see cref="FrozenIsZero"/> (after a checkpoint wrote <see cref="Frozen"/> directly).</summary>
    public void RecheckFrozen()
    {
        using var squares = Tensor.Empty([1], Frozen.DType, Frozen.Device);
        Frozen.Data.Backend.SumOfSquares(Frozen.Data, squares);
        FrozenIsZero = squares.Item() == 0;
    }

    public void Dispose() => indices.Dispose();

    public override IReadOnlyList<Parameter> Trainable => [Values];

    public override IReadOnlyList<Parameter> State => [Frozen, Values];
}
