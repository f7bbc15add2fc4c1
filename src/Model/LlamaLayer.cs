using Engine.Autograd;

namespace Engine.Model;

/// <summary>
/// One decoder layer as in Hugging Face LlamaDecoderLayer: RMSNorm → attention (RoPE, grouped-query heads) → residual;
/// RMSNorm → SwiGLU MLP (gate, up, down) → residual.
/// </summary>
public sealed class LlamaLayer
{
    private readonly LlamaConfig config;

    internal LlamaLayer(int index, LlamaConfig config, Func<string, int[], Parameter> makeWeight, Func<string, Parameter> makeNorm)
    {
        Index = index;
        this.config = config;
        string prefix = $"model.layers.{index}";
        InputNorm = makeNorm($"{prefix}.input_layernorm.weight");
        PostAttentionNorm = makeNorm($"{prefix}.post_attention_layernorm.weight");
        int hidden = config.HiddenSize, keyValueWidth = config.KeyValueHeads * config.HeadDim, intermediate = config.IntermediateSize;
        ILinearLayer Make(string module, int outFeatures, int inFeatures) =>
            new Linear($"{prefix}.{module}", makeWeight($"{prefix}.{module}.weight", [outFeatures, inFeatures]));
        QueryProjection = Make("self_attn.q_proj", hidden, hidden);
        KeyProjection = Make("self_attn.k_proj", keyValueWidth, hidden);
        ValueProjection = Make("self_attn.v_proj", keyValueWidth, hidden);
        OutputProjection = Make("self_attn.o_proj", hidden, hidden);
        GateProjection = Make("mlp.gate_proj", intermediate, hidden);
        UpProjection = Make("mlp.up_proj", intermediate, hidden);
        DownProjection = Make("mlp.down_proj", hidden, intermediate);
    }

    public int Index { get; }

    public Parameter InputNorm { get; }

    public Parameter PostAttentionNorm { get; }

    public ILinearLayer QueryProjection { get; set; }

    public ILinearLayer KeyProjection { get; set; }

    public ILinearLayer ValueProjection { get; set; }

    public ILinearLayer OutputProjection { get; set; }

    public ILinearLayer GateProjection { get; set; }

    public ILinearLayer UpProjection { get; set; }

    public ILinearLayer DownProjection { get; set; }

    public IEnumerable<ILinearLayer> LinearLayers =>
        [QueryProjection, KeyProjection, ValueProjection, OutputProjection, GateProjection, UpProjection, DownProjection];

    /// <summary>Swaps the layer named <paramref name="name"/> for <paramref name="replace"/>(it); false when no layer here has that name.</summary>
    internal bool Replace(string name, Func<ILinearLayer, ILinearLayer> replace)
    {
        if (QueryProjection.Name == name) QueryProjection = replace(QueryProjection);
        else if (KeyProjection.Name == name) KeyProjection = replace(KeyProjection);
        else if (ValueProjection.Name == name) ValueProjection = replace(ValueProjection);
        else if (OutputProjection.Name == name) OutputProjection = replace(OutputProjection);
        else if (GateProjection.Name == name) GateProjection = replace(GateProjection);
        else if (UpProjection.Name == name) UpProjection = replace(UpProjection);
        else if (DownProjection.Name == name) DownProjection = replace(DownProjection);
        else return false;
        return true;
    }

    /// <summary>hidden [batch, tokens, hiddenSize] → same shape.</summary>
    public Variable Forward(Variable hidden, Tensor positions, KeyValueCache? cache)
    {
        int batch = hidden.Dim(0), tokens = hidden.Dim(1);
        int heads = config.NumAttentionHeads, keyValueHeads = config.KeyValueHeads, headDim = config.HeadDim;

        var normed = Ops.RmsNorm(hidden, InputNorm, config.RmsNormEps);
        var query = SplitHeads(QueryProjection.Forward(normed), batch, tokens, heads, headDim);
        var key = SplitHeads(KeyProjection.Forward(normed), batch, tokens, keyValueHeads, headDim);
        var value = SplitHeads(ValueProjection.Forward(normed), batch, tokens, keyValueHeads, headDim);
        query = Ops.Rope(query, positions, config.RopeTheta);
        key = Ops.Rope(key, positions, config.RopeTheta);
        if (cache is not null)
        {
            var (allKeys, allValues) = cache.Append(Index, key.Data, value.Data);
            key = new Variable(allKeys);
            value = new Variable(allValues);
        }
        var attended = Ops.CausalAttention(query, key, value);
        var merged = Ops.Reshape(Ops.Permute(attended, 0, 2, 1, 3), batch, tokens, heads * headDim);
        hidden = Ops.Add(hidden, OutputProjection.Forward(merged));

        normed = Ops.RmsNorm(hidden, PostAttentionNorm, config.RmsNormEps);
        var gated = Ops.Mul(Ops.Silu(GateProjection.Forward(normed)), UpProjection.Forward(normed));
        return Ops.Add(hidden, DownProjection.Forward(gated));
    }

    /// <summary>[batch, tokens, heads·headDim] → [batch, heads, tokens, headDim].</summary>
    private static Variable SplitHeads(Variable projected, int batch, int tokens, int heads, int headDim) =>
        Ops.Permute(Ops.Reshape(projected, batch, tokens, heads, headDim), 0, 2, 1, 3);
}
