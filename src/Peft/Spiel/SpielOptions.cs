namespace Engine.Peft.Spiel;

/// <summary>How SpIEL regrows: by accumulated gradients (AG, AdamW) or by SM3's row and column statistics (MA).</summary>
public enum SpielVariant
{
    /// <summary>SpIEL-AG: candidates are the top |dW| entries; regrow by |Σg| over a short accumulation window; AdamW.</summary>
    AccumulatedGradients,

    /// <summary>SpIEL-MA: regrow by row[i] · col[j] of the SM3 optimizer's accumulators; SM3 updates.</summary>
    MomentumApproximation,
}

/// <summary>How the reselected fraction decays after the first reselection.</summary>
public enum ReselectionPolicy
{
    Linear,
    Cosine,
}

/// <summary>SpIEL settings; defaults are the reference configuration's (spiel.md).</summary>
public sealed record SpielOptions
{
    public SpielVariant Variant { get; init; } = SpielVariant.AccumulatedGradients;

    /// <summary>Tuned entries as a fraction of all model parameters (ignored when <see cref="DeltaCount"/> is set).</summary>
    public double Density { get; init; } = 0.01;

    /// <summary>An absolute budget of tuned entries over all targets (overrides the density).</summary>
    public long? DeltaCount { get; init; }

    /// <summary>R: steps between reselections.</summary>
    public int ReselectionInterval { get; init; } = 20;

    /// <summary>A: steps whose gradients feed a reselection (AG); reselection happens after step k·R + A.</summary>
    public int AccumulationSteps { get; init; } = 5;

    /// <summary>The fraction of each matrix's entries replaced at the second reselection (the first replaces all; see <see cref="InitialReallocation"/>).</summary>
    public double InitialReselectionRate { get; init; } = 0.2;

    public ReselectionPolicy Policy { get; init; } = ReselectionPolicy.Linear;

    /// <summary>
    /// Whether the first reselection replaces every slot, as the random initial indices need. Off for an adapter loaded
    /// from a file: its indices and values were learnt, and continuing it replaces only the decaying fraction.
    /// </summary>
    public bool InitialReallocation { get; init; } = true;

    public double Beta1 { get; init; } = 0.9;

    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW's ε for AG (the reference uses 1e-6) and SM3's ε for MA.</summary>
    public double Epsilon { get; init; } = 1e-6;

    public TargetModules Targets { get; init; } = TargetModules.AllLinear;

    public ulong Seed { get; init; }

    internal void Validate()
    {
        if (DeltaCount is { } count ? count < 1 : !(Density > 0 && Density <= 1))
        {
            throw new ArgumentException($"spiel: the budget must be a density in (0, 1] or a positive count, got density {Density}, count {DeltaCount}");
        }
        if (ReselectionInterval < 1 || AccumulationSteps < 1 || AccumulationSteps > ReselectionInterval)
        {
            throw new ArgumentException($"spiel: need 1 <= accumulation steps ({AccumulationSteps}) <= reselection interval ({ReselectionInterval})");
        }
        if (!(InitialReselectionRate >= 0 && InitialReselectionRate <= 1))
        {
            throw new ArgumentException($"spiel: the initial reselection rate must be in [0, 1], got {InitialReselectionRate}");
        }
        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1) || !(Epsilon > 0))
        {
            throw new ArgumentException($"spiel: betas must be in [0, 1) and epsilon positive, got {Beta1}, {Beta2}, {Epsilon}");
        }
    }

    /// <summary>The reselected fraction after step <paramref name="step"/> (1-based) of <paramref name="totalSteps"/>; 0 when none is due.</summary>
    public double ReselectionFraction(int step, int totalSteps)
    {
        if (step % ReselectionInterval != AccumulationSteps % ReselectionInterval || step >= totalSteps)
        {
            return 0;
        }
        if (step == AccumulationSteps && InitialReallocation)
        {
            return 1;
        }
        double progress = (double)step / totalSteps;
        return Policy == ReselectionPolicy.Linear
            ? InitialReselectionRate * (1 - progress)
            : InitialReselectionRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }

    /// <summary>Whether <paramref name="step"/> (1-based) lies in an accumulation window, and whether it opens one.</summary>
    public (bool Accumulates, bool OpensWindow) Window(int step)
    {
        int position = (step - 1) % ReselectionInterval;
        return (position < AccumulationSteps, position == 0);
    }
}
