namespace Engine.Training.Ist;

/// <summary>
/// IST's layer scores and the choices made from them. A higher score means a LESS important layer (the reference's
/// naming): each step samples the active layers without replacement with weights sigmoid(−score); every update interval,
/// actions suppress random halves of the layers, and each suppressed layer's score moves by the action's reward
/// (exp(−loss) minus the actions' mean) times sigmoid′(score) times the score learning rate. All draws are seeded by
/// (seed, step), so a resumed run makes the same choices.
/// </summary>
public sealed class LayerImportance
{
    private readonly IstOptions options;

    public LayerImportance(int layerCount, IstOptions options)
    {
        options.Validate();
        if (layerCount < 1)
        {
            throw new ArgumentException($"ist: the model needs at least one decoder layer, got {layerCount}");
        }
        this.options = options;
        Scores = new double[layerCount];
        SelectionCounts = new long[layerCount];
    }

    public double[] Scores { get; }

    /// <summary>How often each layer was active so far.</summary>
    public long[] SelectionCounts { get; }

    public int LayerCount => Scores.Length;

    public int ActiveCount => Math.Max(1, (int)Math.Round(options.ActiveFraction * LayerCount, MidpointRounding.AwayFromZero));

    public int SuppressedCount => Math.Clamp((int)Math.Round(options.SuppressedFraction * LayerCount, MidpointRounding.AwayFromZero), 1, LayerCount);

    /// <summary>The active layers of <paramref name="step"/>, ascending: successive weighted draws without replacement.</summary>
    public int[] SampleActive(int step)
    {
        var weights = Scores.Select(score => 1 / (1 + Math.Exp(score))).ToArray();
        var chosen = new List<int>(ActiveCount);
        for (int draw = 0; draw < ActiveCount; draw++)
        {
            double total = Enumerable.Range(0, LayerCount).Where(layer => !chosen.Contains(layer)).Sum(layer => weights[layer]);
            double target = Philox.Uniform(options.Seed ^ 0x157A_C71BEUL, ((ulong)step << 8) | (uint)draw) * total;
            int pick = -1;
            for (int layer = 0; layer < LayerCount; layer++)
            {
                if (chosen.Contains(layer))
                {
                    continue;
                }
                pick = layer;
                target -= weights[layer];
                if (target < 0)
                {
                    break;
                }
            }
            chosen.Add(pick);
        }
        chosen.Sort();
        foreach (int layer in chosen)
        {
            SelectionCounts[layer]++;
        }
        return [.. chosen];
    }

    /// <summary>The suppressed layer sets of the score update after <paramref name="step"/>: distinct uniform random subsets.</summary>
    public IReadOnlyList<int[]> SuppressionSets(int step)
    {
        var sets = new List<int[]>(options.Actions);
        for (int action = 0; action < options.Actions; action++)
        {
            var order = Enumerable.Range(0, LayerCount).ToArray();
            ulong seed = Philox.Block(options.Seed ^ 0x5C0_9E5EUL, ((ulong)step << 8) | (uint)action).First;
            new Random(unchecked((int)seed)).Shuffle(order);
            sets.Add([.. order.Take(SuppressedCount).Order()]);
        }
        return sets;
    }

    /// <summary>
    /// The score update from one loss per action: r_k = exp(−loss_k) − mean_j exp(−loss_j); with p = sigmoid(score) taken
    /// before any change, score[i] += r_k · p_i (1 − p_i) · lr for every layer i in action k's suppressed set.
    /// </summary>
    public void Update(IReadOnlyList<int[]> suppressedSets, IReadOnlyList<double> losses)
    {
        if (suppressedSets.Count != losses.Count || losses.Count == 0)
        {
            throw new ArgumentException($"ist: need one loss per action, got {losses.Count} losses for {suppressedSets.Count} actions");
        }
        var probabilities = Scores.Select(score => 1 / (1 + Math.Exp(-score))).ToArray();
        var rewards = losses.Select(loss => Math.Exp(-loss)).ToArray();
        double meanReward = rewards.Average();
        for (int action = 0; action < rewards.Length; action++)
        {
            double reward = rewards[action] - meanReward;
            foreach (int layer in suppressedSets[action])
            {
                Scores[layer] += reward * probabilities[layer] * (1 - probabilities[layer]) * options.ScoreLearningRate;
            }
        }
    }
}
