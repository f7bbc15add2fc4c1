using Engine.Autograd;

namespace Engine.Model;

/// <summary>
/// A linear layer y = x Wᵀ (W stored [out, in] as Hugging Face does) as the model calls it. Adapter methods (LoRA, SpIEL,
/// ...) replace a model's layers with their own implementation that wraps the base one.
/// </summary>
public interface ILinearLayer
{
    /// <summary>Full module path, e.g. "model.layers.0.self_attn.q_proj".</summary>
    string Name { get; }

    int InFeatures { get; }

    int OutFeatures { get; }

    /// <summary>The base weight [out, in].</summary>
    Parameter Weight { get; }

    Variable Forward(Variable input);
}

/// <summary>The plain linear layer of the base model.</summary>
public sealed class Linear(string name, Parameter weight) : ILinearLayer
{
    public string Name { get; } = name;

    public Parameter Weight { get; } = weight;

    public int InFeatures => Weight.Dim(1);

    public int OutFeatures => Weight.Dim(0);

    public Variable Forward(Variable input) => Ops.Linear(input, Weight);
}
