using System.CommandLine;
using Engine.Model;
using Engine.Peft;
using Engine.Peft.Lora;
using Engine.Peft.Spiel;
using Engine.Peft.VbLora;
using Engine.Training;
using Engine.Training.Ist;

namespace Engine.Cli;

/// <summary>The fine-tuning methods --method selects, and the flags of the adapter methods.</summary>
internal sealed class TrainingMethods
{
    public static readonly string[] Names = ["full", "lora", "lora-sp", "vblora", "spiel-ag", "spiel-ma"];

    private static readonly LoraOptions LoraDefaults = new();
    private static readonly LoraSparsityOptions SparsityDefaults = new();
    private static readonly VbLoraOptions VbLoraDefaults = new();
    private static readonly SpielOptions SpielDefaults = new();
    private static readonly IstOptions IstDefaults = new();

    public Option<string> Method { get; } = new("--method") { Description = $"Fine-tuning method: {string.Join(", ", Names)}.", DefaultValueFactory = _ => "full" };

    public Option<string?> InitAdapter { get; } = new("--init-adapter") { Description = "Continue training this adapter folder (its config sets the method's settings).", HelpName = "DIR" };

    public Option<string> Target { get; } = new("--target")
    {
        Description = "Modules to adapt: all-linear, comma-separated names (suffix match, e.g. q_proj,v_proj) or regex:PATTERN (whole path).",
        DefaultValueFactory = _ => TargetModules.AllLinearName,
    };

    public Option<int[]> Layers { get; } = new("--layers") { Description = "Only adapt these decoder layers (default: all).", AllowMultipleArgumentsPerToken = true };

    public Option<int?> Rank { get; } = new("--rank") { Description = $"Adapter rank r (default: lora {LoraDefaults.Rank}, vblora {VbLoraDefaults.Rank})." };

    public Option<double?> Alpha { get; } = new("--alpha") { Description = "LoRA alpha; the scale is alpha / r (default: equal to the rank, scale 1)." };

    public Option<bool> RsLora { get; } = new("--rslora") { Description = "LoRA: scale alpha / sqrt(r) instead of alpha / r." };

    public Option<double> Dropout { get; } = new("--adapter-dropout") { Description = "Dropout on the adapter's input (LoRA, VB-LoRA).", DefaultValueFactory = _ => 0.0 };

    public Option<double> FrozenFraction { get; } = new("--frozen-fraction") { Description = "LoRA-SP: fraction of A and B frozen.", DefaultValueFactory = _ => SparsityDefaults.FrozenFraction };

    public Option<string> Granularity { get; } = new("--freeze-granularity") { Description = "LoRA-SP: freeze single entries, or whole rank components (row).", DefaultValueFactory = _ => "element" };

    public Option<int> RedrawEvery { get; } = new("--redraw-every") { Description = "LoRA-SP: redraw the freeze masks every N steps (0: draw once).", DefaultValueFactory = _ => 0 };

    public Option<int> VectorCount { get; } = new("--num-vectors") { Description = "VB-LoRA: vectors in the shared bank (N).", DefaultValueFactory = _ => VbLoraDefaults.VectorCount };

    public Option<int> VectorLength { get; } = new("--vector-length") { Description = "VB-LoRA: bank vector length L; must divide every adapted layer's dimensions.", DefaultValueFactory = _ => VbLoraDefaults.VectorLength };

    public Option<int> TopK { get; } = new("--topk") { Description = "VB-LoRA: bank vectors mixed per sub-vector.", DefaultValueFactory = _ => VbLoraDefaults.TopK };

    public Option<double> BankLearningRate { get; } = new("--bank-lr") { Description = "VB-LoRA: learning rate of the vector bank.", DefaultValueFactory = _ => VbLoraDefaults.BankLearningRate };

    public Option<double> LogitsLearningRate { get; } = new("--logits-lr") { Description = "VB-LoRA: learning rate of the logits.", DefaultValueFactory = _ => VbLoraDefaults.LogitsLearningRate };

    public Option<double> BankInitBound { get; } = new("--bank-init-bound") { Description = "VB-LoRA: the bank starts ~ U(-bound, bound).", DefaultValueFactory = _ => VbLoraDefaults.BankInitBound };

    public Option<double> LogitsInitStd { get; } = new("--logits-init-std") { Description = "VB-LoRA: the logits start ~ N(0, std).", DefaultValueFactory = _ => VbLoraDefaults.LogitsInitStd };

    public Option<bool> SaveTopKOnly { get; } = new("--save-topk-only") { Description = "VB-LoRA: store only each sub-vector's top-k indices and weights (a far smaller file; inference only)." };

    public Option<double> Density { get; } = new("--density") { Description = "SpIEL: tuned entries as a fraction of all model parameters.", DefaultValueFactory = _ => SpielDefaults.Density };

    public Option<long?> DeltaCount { get; } = new("--delta-count") { Description = "SpIEL: tuned entries in total (overrides --density), spread at equal density over the targets." };

    public Option<int> ReselectionInterval { get; } = new("--reselection-interval") { Description = "SpIEL: steps between reselections (R).", DefaultValueFactory = _ => SpielDefaults.ReselectionInterval };

    public Option<int> AccumulationSteps { get; } = new("--accumulation-steps") { Description = "SpIEL: steps of gradient statistics before each reselection (A); reselection after step k*R + A.", DefaultValueFactory = _ => SpielDefaults.AccumulationSteps };

    public Option<double> ReselectionRate { get; } = new("--reselection-rate") { Description = "SpIEL: fraction replaced at the second reselection (the first replaces all), decaying to 0.", DefaultValueFactory = _ => SpielDefaults.InitialReselectionRate };

    public Option<string> ReselectionPolicyName { get; } = new("--reselection-policy") { Description = "SpIEL: how the reselected fraction decays.", DefaultValueFactory = _ => "linear" };

    public Option<bool> Ist { get; } = new("--ist") { Description = "IST: train only a sampled part of the decoder layers' adapters each step, chosen by learned layer importance." };

    public Option<double> IstActiveFraction { get; } = new("--ist-active-fraction") { Description = "IST: fraction of layers active per step.", DefaultValueFactory = _ => IstDefaults.ActiveFraction };

    public Option<double> IstSuppressedFraction { get; } = new("--ist-suppressed-fraction") { Description = "IST: fraction of layers suppressed per scoring action.", DefaultValueFactory = _ => IstDefaults.SuppressedFraction };

    public Option<double> IstSuppressionFactor { get; } = new("--ist-suppression-factor") { Description = "IST: adapter output scale of suppressed layers while scoring.", DefaultValueFactory = _ => IstDefaults.SuppressionFactor };

    public Option<int> IstActions { get; } = new("--ist-actions") { Description = "IST: scoring forward passes per score update.", DefaultValueFactory = _ => IstDefaults.Actions };

    public Option<double> IstScoreLearningRate { get; } = new("--ist-score-lr") { Description = "IST: score learning rate.", DefaultValueFactory = _ => IstDefaults.ScoreLearningRate };

    public Option<int> IstInterval { get; } = new("--ist-interval") { Description = "IST: steps between score updates.", DefaultValueFactory = _ => IstDefaults.UpdateInterval };

    public Option<int> IstRewardBatch { get; } = new("--ist-reward-batch") { Description = "IST: training examples in the reward batch.", DefaultValueFactory = _ => IstDefaults.RewardBatchSize };

    public TrainingMethods()
    {
        OptionChecks.OneOf(Method, Names);
        OptionChecks.OneOf(Granularity, "element", "row");
        OptionChecks.AtLeast(Rank, 1);
        OptionChecks.AtLeast(RedrawEvery, 0);
        OptionChecks.AtLeast(VectorCount, 1);
        OptionChecks.AtLeast(VectorLength, 1);
        OptionChecks.AtLeast(TopK, 1);
        OptionChecks.Check(Dropout, value => value >= 0 && value < 1, "must be in [0, 1)");
        OptionChecks.Check(FrozenFraction, value => value >= 0 && value < 1, "must be in [0, 1)");
        OptionChecks.NotNegative(BankLearningRate);
        OptionChecks.OneOf(ReselectionPolicyName, "linear", "cosine");
        OptionChecks.Check(Density, value => value > 0 && value <= 1, "must be in (0, 1]");
        OptionChecks.Check(DeltaCount, value => value is null or >= 1, "must be at least 1");
        OptionChecks.AtLeast(ReselectionInterval, 1);
        OptionChecks.AtLeast(AccumulationSteps, 1);
        OptionChecks.Check(ReselectionRate, value => value >= 0 && value <= 1, "must be in [0, 1]");
        OptionChecks.NotNegative(LogitsLearningRate);
    }

    public void AddTo(Command command)
    {
        foreach (Option option in new Option[] { Method, InitAdapter, Target, Layers, Rank, Alpha, RsLora, Dropout, FrozenFraction, Granularity, RedrawEvery,
                     VectorCount, VectorLength, TopK, BankLearningRate, LogitsLearningRate, BankInitBound, LogitsInitStd, SaveTopKOnly,
                     Density, DeltaCount, ReselectionInterval, AccumulationSteps, ReselectionRate, ReselectionPolicyName,
                     Ist, IstActiveFraction, IstSuppressedFraction, IstSuppressionFactor, IstActions, IstScoreLearningRate, IstInterval, IstRewardBatch })
        {
            command.Options.Add(option);
        }
    }

    /// <summary>IST's settings from the flags; null without --ist (an --ist-* flag without --ist is an error).</summary>
    public IstOptions? IstSettings(ParseResult parse, int seed)
    {
        Option[] istFlags = [IstActiveFraction, IstSuppressedFraction, IstSuppressionFactor, IstActions, IstScoreLearningRate, IstInterval, IstRewardBatch];
        if (!parse.GetValue(Ist))
        {
            return istFlags.FirstOrDefault(flag => parse.GetResult(flag) is { Implicit: false }) is { } stray
                ? throw new UsageException($"{stray.Name} applies with --ist only")
                : null;
        }
        try
        {
            var options = new IstOptions
            {
                ActiveFraction = parse.GetValue(IstActiveFraction),
                SuppressedFraction = parse.GetValue(IstSuppressedFraction),
                SuppressionFactor = parse.GetValue(IstSuppressionFactor),
                Actions = parse.GetValue(IstActions),
                ScoreLearningRate = parse.GetValue(IstScoreLearningRate),
                UpdateInterval = parse.GetValue(IstInterval),
                RewardBatchSize = parse.GetValue(IstRewardBatch),
                Seed = (ulong)seed,
            };
            _ = new LayerImportance(1, options);
            return options;
        }
        catch (ArgumentException error)
        {
            throw new UsageException(error.Message);
        }
    }

    /// <summary>The methods each adapter flag applies to: giving one to another method is an error, not silently ignored.</summary>
    private IEnumerable<(Option Flag, string[] Methods)> Applicability()
    {
        string[] adapters = ["lora", "lora-sp", "vblora", "spiel-ag", "spiel-ma"], lora = ["lora", "lora-sp"], vblora = ["vblora"], spiel = ["spiel-ag", "spiel-ma"];
        foreach (var flag in new Option[] { Target, Layers })
        {
            yield return (flag, adapters);
        }
        foreach (var flag in new Option[] { Rank, Dropout })
        {
            yield return (flag, ["lora", "lora-sp", "vblora"]);
        }
        foreach (var flag in new Option[] { Ist, IstActiveFraction, IstSuppressedFraction, IstSuppressionFactor, IstActions, IstScoreLearningRate, IstInterval, IstRewardBatch })
        {
            yield return (flag, adapters);
        }
        foreach (var flag in new Option[] { Density, DeltaCount, ReselectionInterval, AccumulationSteps, ReselectionRate, ReselectionPolicyName })
        {
            yield return (flag, spiel);
        }
        foreach (var flag in new Option[] { Alpha, RsLora })
        {
            yield return (flag, lora);
        }
        foreach (var flag in new Option[] { FrozenFraction, Granularity, RedrawEvery })
        {
            yield return (flag, ["lora-sp"]);
        }
        foreach (var flag in new Option[] { VectorCount, VectorLength, TopK, BankLearningRate, LogitsLearningRate, BankInitBound, LogitsInitStd, SaveTopKOnly })
        {
            yield return (flag, vblora);
        }
    }

    /// <summary>The method --method names, configured from the flags; <paramref name="baseModel"/> is written as base_model_name_or_path.</summary>
    public ITrainingMethod Create(ParseResult parse, int seed, string baseModel)
    {
        string name = parse.GetRequiredValue(Method);
        foreach (var (flag, methods) in Applicability())
        {
            if (parse.GetResult(flag) is { Implicit: false } && !methods.Contains(name))
            {
                throw new UsageException($"{flag.Name} applies to --method {string.Join(" or ", methods)}, not {name}");
            }
        }
        // Learning rates and the file layout are choices of this run; everything else comes from the adapter's config.
        Option[] runChoices = [BankLearningRate, LogitsLearningRate, SaveTopKOnly];
        if (parse.GetValue(InitAdapter) is not null
            && Applicability().FirstOrDefault(pair => !runChoices.Contains(pair.Flag) && parse.GetResult(pair.Flag) is { Implicit: false }).Flag is { } ignored)
        {
            throw new UsageException($"{ignored.Name}: --init-adapter continues an adapter with the settings in its config; drop {ignored.Name}");
        }
        if (name == "full")
        {
            return parse.GetValue(InitAdapter) is null ? new FullFineTuning() : throw new UsageException($"--init-adapter: only adapter methods ({string.Join(", ", Names.Where(method => method != name))}) continue an adapter");
        }
        if (parse.GetValue(InitAdapter) is { } directory)
        {
            if (!AdapterFiles.IsAdapterDirectory(directory))
            {
                throw new UsageException($"--init-adapter {directory}: not an adapter folder (no {AdapterFiles.ConfigFileName})");
            }
            double bankRate = parse.GetValue(BankLearningRate), logitsRate = parse.GetValue(LogitsLearningRate);
            bool topKOnly = parse.GetValue(SaveTopKOnly);
            return new AdapterTraining(name, model =>
            {
                var adapter = LoadInitialAdapter(directory, name, model);
                if (adapter is VbLoraAdapter vbLora)
                {
                    vbLora.SetLearningRates(bankRate, logitsRate);
                    vbLora.SaveOnlyTopKWeights |= topKOnly;
                }
                return adapter;
            }) { BaseModelNameOrPath = baseModel };
        }
        var targets = TargetModules.Parse(parse.GetRequiredValue(Target)).WithLayers(parse.GetValue(Layers) is { Length: > 0 } layers ? layers : null);
        double dropout = parse.GetValue(Dropout);
        if (name is "spiel-ag" or "spiel-ma")
        {
            var spielOptions = new SpielOptions
            {
                Variant = name == "spiel-ag" ? SpielVariant.AccumulatedGradients : SpielVariant.MomentumApproximation,
                Density = parse.GetValue(Density),
                DeltaCount = parse.GetValue(DeltaCount),
                ReselectionInterval = parse.GetValue(ReselectionInterval),
                AccumulationSteps = parse.GetValue(AccumulationSteps),
                InitialReselectionRate = parse.GetValue(ReselectionRate),
                Policy = Enum.Parse<ReselectionPolicy>(parse.GetRequiredValue(ReselectionPolicyName), ignoreCase: true),
                Targets = targets,
                Seed = (ulong)seed,
            };
            return AdapterTraining.Fresh(name, () => new SpielAdapter(spielOptions) { BaseModelNameOrPath = baseModel });
        }
        if (name == "vblora")
        {
            var options = new VbLoraOptions
            {
                Rank = parse.GetValue(Rank) ?? VbLoraDefaults.Rank,
                VectorCount = parse.GetValue(VectorCount),
                VectorLength = parse.GetValue(VectorLength),
                TopK = parse.GetValue(TopK),
                Dropout = dropout,
                BankLearningRate = parse.GetValue(BankLearningRate),
                LogitsLearningRate = parse.GetValue(LogitsLearningRate),
                BankInitBound = parse.GetValue(BankInitBound),
                LogitsInitStd = parse.GetValue(LogitsInitStd),
                SaveOnlyTopKWeights = parse.GetValue(SaveTopKOnly),
                Targets = targets,
                Seed = (ulong)seed,
            };
            return AdapterTraining.Fresh(name, () => new VbLoraAdapter(options) { BaseModelNameOrPath = baseModel });
        }
        int rank = parse.GetValue(Rank) ?? LoraDefaults.Rank;
        var lora = new LoraOptions
        {
            Rank = rank,
            Alpha = parse.GetValue(Alpha) ?? rank,
            UseRsLora = parse.GetValue(RsLora),
            Dropout = dropout,
            Targets = targets,
            Seed = (ulong)seed,
            Sparsity = name == "lora-sp"
                ? new LoraSparsityOptions
                {
                    FrozenFraction = parse.GetValue(FrozenFraction),
                    Granularity = Enum.Parse<FreezeGranularity>(parse.GetRequiredValue(Granularity), ignoreCase: true),
                    RedrawEvery = parse.GetValue(RedrawEvery),
                }
                : null,
        };
        return AdapterTraining.Fresh(name, () => new LoraAdapter(lora) { BaseModelNameOrPath = baseModel });
    }

    /// <summary>
    /// The --init-adapter folder, attached to <paramref name="model"/>. Its config decides what trains, so an adapter of
    /// another method than --method is refused: it would train under the wrong name in the notes and the checkpoint.
    /// </summary>
    private static Adapter LoadInitialAdapter(string directory, string method, LlamaModel model)
    {
        var adapter = AdapterFiles.Load(directory, model);
        string saved = adapter switch
        {
            VbLoraAdapter => "vblora",
            SpielAdapter { Options.Variant: SpielVariant.AccumulatedGradients } => "spiel-ag",
            SpielAdapter => "spiel-ma",
            LoraAdapter { Options.Sparsity: not null } => "lora-sp",
            _ => "lora",
        };
        if (saved != method)
        {
            adapter.Dispose();
            throw new UsageException($"--init-adapter {directory}: holds a {saved} adapter, not {method}; continue it with --method {saved}");
        }
        return adapter;
    }
}
