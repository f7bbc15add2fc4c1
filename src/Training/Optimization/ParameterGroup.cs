using Engine.Autograd;

namespace Engine.Training.Optimization;

/// <summary>Parameters that share a learning rate and weight decay (e.g. VB-LoRA's bank and logits train at different rates).</summary>
public sealed record ParameterGroup(string Name, IReadOnlyList<Parameter> Parameters, double LearningRate, double WeightDecay);
