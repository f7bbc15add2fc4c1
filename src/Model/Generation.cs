using Engine.Autograd;

namespace Engine.Model;

/// <summary>How to pick each next token. Temperature 0 is greedy; top-k 0 and top-p 1 disable those filters.</summary>
public sealed record SamplingOptions
{
    public int MaxNewTokens { get; init; } = 32;

    public double Temperature { get; init; }

    public int TopK { get; init; }

    public double TopP { get; init; } = 1.0;

    public ulong Seed { get; init; }

    /// <summary>Generation stops after any of these tokens (it is included in the output).</summary>
    public IReadOnlyCollection<int> StopTokens { get; init; } = [];
}

/// <summary>Autoregressive decoding with a key/value cache: the prompt is processed once, then one token per step.</summary>
public static class Generation
{
    /// <summary>Returns the generated token ids (prompt excluded).</summary>
    public static IReadOnlyList<int> Generate(LlamaModel model, IReadOnlyList<int> prompt, SamplingOptions options)
    {
        if (prompt.Count == 0)
        {
            throw new ArgumentException("generate: the prompt must contain at least one token");
        }
        int capacity = Math.Min(model.Config.MaxPositionEmbeddings, prompt.Count + options.MaxNewTokens);
        if (prompt.Count >= capacity)
        {
            throw new ArgumentException($"generate: the prompt has {prompt.Count} tokens; max_position_embeddings is {model.Config.MaxPositionEmbeddings}");
        }
        using var noGrad = GradMode.NoGrad();
        using var cache = new KeyValueCache(model.Config, batch: 1, capacity, model.Device);
        var random = new Random(unchecked((int)options.Seed ^ (int)(options.Seed >> 32)));
        var generated = new List<int>();
        var next = prompt.ToArray();
        while (generated.Count < options.MaxNewTokens && cache.Length + next.Length <= capacity)
        {
            int token;
            using (var scope = new TensorScope())
            {
                using var ids = Tensor.FromArray<int>(next, [1, next.Length], model.Device);
                var logits = model.Forward(ids, cache);
                using var last = logits.Data.Narrow(1, next.Length - 1, 1);
                token = Sample(last.To(Device.Cpu).ToArray<float>(), options, random);
            }
            generated.Add(token);
            if (options.StopTokens.Contains(token))
            {
                break;
            }
            next = [token];
        }
        return generated;
    }

    /// <summary>Picks a token from one row of logits. Greedy ties take the lowest id.</summary>
    public static int Sample(float[] logits, SamplingOptions options, Random random)
    {
        if (options.Temperature <= 0)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++)
            {
                if (logits[i] > logits[best])
                {
                    best = i;
                }
            }
            return best;
        }
        // Candidates sorted by logit; top-k then top-p (nucleus) keep a prefix of them.
        var order = Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        int keep = options.TopK > 0 ? Math.Min(options.TopK, order.Length) : order.Length;
        double max = logits[order[0]];
        var weights = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++)
        {
            weights[i] = Math.Exp((logits[order[i]] - max) / options.Temperature);
            total += weights[i];
        }
        if (options.TopP < 1)
        {
            double cumulative = 0;
            int nucleus = 0;
            while (nucleus < keep && cumulative < options.TopP * total)
            {
                cumulative += weights[nucleus++];
            }
            keep = Math.Max(1, nucleus);
            total = weights.Take(keep).Sum();
        }
        double draw = random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            draw -= weights[i];
            if (draw <= 0)
            {
                return order[i];
            }
        }
        return order[keep - 1];
    }
}
