using System.Diagnostics;
using System.Text.Json;
using Engine.Cpu;
using Engine.IO;
using Engine.Model;
using Engine.Model.Tokenization;
using Engine.Peft.Lora;
using Engine.Peft.Spiel;
using Engine.Peft.VbLora;
using Engine.Training.Data;
using Engine.Training.Evaluation;
using Engine.Training.Ist;
using Engine.Training.Optimization;

namespace Engine.Training.Demo;

public sealed record DemoOptions
{
    /// <summary>Where data, the cached base model, fine-tuned results and the report go.</summary>
    public string OutputDirectory { get; init; } = "demo-output";

    public int Seed { get; init; } = 1;

    public int Threads { get; init; } = Environment.ProcessorCount;

    /// <summary>
    /// 80 known entities: few enough facts that a tiny model stores them (and the question-phrasing skill with them) within
    /// the pretraining budget; with 200, 1500 steps left it at chance on its own facts.
    /// </summary>
    public WorldOptions World { get; init; } = new() { KnownEntityCount = 80 };

    /// <summary>The tiny Llama pretrained on the world (vocabulary size is filled in from the tokenizer).</summary>
    public LlamaConfig Model { get; init; } = new()
    {
        VocabSize = 1, HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 128, TieWordEmbeddings = true, RmsNormEps = 1e-5,
    };

    public int PretrainSteps { get; init; } = 1000;

    public double PretrainLearningRate { get; init; } = 3e-3;

    /// <summary>About 40 epochs over the 400 fine-tuning questions: memorising new facts takes tens of exposures each.</summary>
    public int FineTuneSteps { get; init; } = 1000;

    public int BatchSize { get; init; } = 16;

    public int SequenceLength { get; init; } = 64;

    /// <summary>Pretrain again even when a cached base model with the same settings exists.</summary>
    public bool ForcePretrain { get; init; }

    /// <summary>
    /// The fine-tuning methods compared, at comparable budgets: LoRA r=8 on every linear layer; LoRA-SP the same with half
    /// of A and B frozen; VB-LoRA with a bank of 64 vectors of length 32 (L must divide 128, 352 and the key/value width
    /// 64) and rank 4, saved top-k only as its paper does; SpIEL-AG and -MA at LoRA's budget of tuned entries. Learning
    /// rates were picked by a sweep on this task (README).
    /// </summary>
    public IReadOnlyList<DemoMethod> Methods { get; init; } = DefaultMethods(seed: 1);

    public static IReadOnlyList<DemoMethod> DefaultMethods(int seed) =>
    [
        new DemoMethod("full", "full fine-tuning", _ => new FullFineTuning(), LearningRate: 2e-3),
        new DemoMethod("lora", "LoRA r=8, all linear", _ => AdapterTraining.Fresh("lora", () => new LoraAdapter(Lora(seed))), LearningRate: 3e-3),
        new DemoMethod("lora-ist", "LoRA r=8 + IST (1 of 4 layers)", rewardBatches => new IstTraining(AdapterTraining.Fresh("lora", () => new LoraAdapter(Lora(seed))),
            new IstOptions { Seed = (ulong)seed }, rewardBatches), LearningRate: 3e-3),
        new DemoMethod("lora-sp", "LoRA-SP r=8, half frozen", _ => AdapterTraining.Fresh("lora-sp", () => new LoraAdapter(Lora(seed) with { Sparsity = new() })), LearningRate: 5e-3),
        new DemoMethod("vblora", "VB-LoRA r=4, 64x32 bank, top-2", _ => AdapterTraining.Fresh("vblora", () => new VbLoraAdapter(new VbLoraOptions
        {
            Rank = 4, VectorCount = 64, VectorLength = 32, TopK = 2, BankLearningRate = 1e-2, LogitsLearningRate = 1e-1, SaveOnlyTopKWeights = true, Seed = (ulong)seed,
        })), LearningRate: 1e-2), // shown in the log only: the bank and logits groups carry their own rates
        new DemoMethod("spiel-ag", "SpIEL-AG, LoRA's budget", _ => AdapterTraining.Fresh("spiel-ag", () => new SpielAdapter(Spiel(seed, SpielVariant.AccumulatedGradients))), LearningRate: 3e-3),
        new DemoMethod("spiel-ma", "SpIEL-MA, LoRA's budget", _ => AdapterTraining.Fresh("spiel-ma", () => new SpielAdapter(Spiel(seed, SpielVariant.MomentumApproximation))), LearningRate: 3e-2),
    ];

    /// <summary>SpIEL at the same number of tuned entries as LoRA r=8 on all linear layers (74,752 on the demo model).</summary>
    private static SpielOptions Spiel(int seed, SpielVariant variant) => new() { Variant = variant, DeltaCount = 74_752, Seed = (ulong)seed };

    private static LoraOptions Lora(int seed) => new() { Rank = 8, Alpha = 16, Seed = (ulong)seed };
}

/// <summary>One row of the comparison: a short key (for --methods), the table name, a method factory and its learning rate.</summary>
/// <remarks><see cref="Create"/> receives reward batches (the first fine-tuning examples) for methods that score layers (IST).</remarks>
public sealed record DemoMethod(string Key, string Name, Func<IReadOnlyList<Batch>, ITrainingMethod> Create, double LearningRate);

public sealed record DemoRow(string Method, long TrainableParameters, long StoredBytes, long PeakMemoryBytes, double Seconds,
    double TokensPerSecond, double EvalLoss, double Accuracy, double InDistributionAccuracy);

public sealed record DemoReport(
    IReadOnlyList<DemoRow> Rows, double PretrainSeconds, bool PretrainCached, double PretrainEvalAccuracy, double BaseAccuracy, long BaseParameters, double TotalSeconds)
{
    /// <summary>The table as Markdown (also written to report.md).</summary>
    public string ToMarkdown()
    {
        var lines = new List<string>
        {
            $"Base model: {BaseParameters:N0} parameters, pretrained in {PretrainSeconds:F0} s{(PretrainCached ? " (cached)" : "")}; " +
            $"its accuracy on questions about pretraining facts: {PretrainEvalAccuracy:P0}; on the downstream task before fine-tuning: {BaseAccuracy:P0}.",
            "",
            "| method | trainable params | stored bytes | peak memory | seconds | tokens/s | eval loss | exact match (held-out phrasing) | exact match (training phrasing) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        };
        lines.AddRange(Rows.Select(row =>
            $"| {row.Method} | {row.TrainableParameters:N0} | {row.StoredBytes:N0} | {row.PeakMemoryBytes / 1048576.0:F1} MiB | {row.Seconds:F1} | {row.TokensPerSecond:N0} | {row.EvalLoss:F3} | {row.Accuracy:P1} | {row.InDistributionAccuracy:P1} |"));
        lines.Add("");
        lines.Add($"Whole demo: {TotalSeconds:F0} s.");
        return string.Join(Environment.NewLine, lines);
    }
}

/// <summary>
/// The built-in demo: generate the synthetic world, pretrain a tiny Llama on it (cached across runs), then fine-tune it on
/// new facts with each method and compare trainable parameters, stored bytes, peak memory, speed, eval loss and exact-match
/// accuracy on questions phrased in ways the fine-tuning data never used.
/// </summary>
public sealed class DemoRunner(DemoOptions options)
{
    /// <summary>Progress messages ("pretraining...", results).</summary>
    public event Action<string>? Message;

    /// <summary>Each optimizer step of each phase ("pretrain", or a method name) and its step budget.</summary>
    public event Action<string, StepMetrics, int>? StepCompleted;

    private string BaseModelDirectory => Path.Combine(options.OutputDirectory, "base-model");

    private string DataDirectory => Path.Combine(options.OutputDirectory, "data");

    public DemoReport Run()
    {
        var total = Stopwatch.StartNew();
        CpuBackend.Instance.Threads = options.Threads;
        var world = SyntheticWorld.Generate(options.Seed, options.World);
        world.WriteJsonl(DataDirectory);
        Message?.Invoke($"world: {world.KnownEntities.Count} known entities, {world.NewEntities.Count} new ones; data in {DataDirectory}");

        var (pretrainSeconds, cached) = EnsureBaseModel(world);
        var tokenizer = WordTokenizer.Load(BaseModelDirectory);
        double pretrainAccuracy, baseAccuracy;
        long baseParameters;
        using (var baseModel = LlamaModel.Load(BaseModelDirectory))
        {
            baseParameters = baseModel.ParameterCount;
            pretrainAccuracy = ExactMatch.Evaluate(baseModel, tokenizer, world.PretrainEval.Take(100).ToList()).Accuracy;
            baseAccuracy = ExactMatch.Evaluate(baseModel, tokenizer, world.FineTuneEval).Accuracy;
        }
        Message?.Invoke($"base model: {pretrainAccuracy:P0} on pretraining facts, {baseAccuracy:P0} on the downstream task before fine-tuning");

        var train = JsonlDataset.Load(Path.Combine(DataDirectory, "finetune_train.jsonl"), tokenizer);
        var eval = JsonlDataset.Load(Path.Combine(DataDirectory, "finetune_eval.jsonl"), tokenizer);
        var rows = options.Methods.Select(method => FineTune(method, tokenizer, world, train, eval)).ToList();
        var report = new DemoReport(rows, pretrainSeconds, cached, pretrainAccuracy, baseAccuracy, baseParameters, total.Elapsed.TotalSeconds);
        AtomicFile.WriteAllText(Path.Combine(options.OutputDirectory, "report.md"), report.ToMarkdown());
        return report;
    }

    /// <summary>Pretrains unless a base model made with identical settings is cached; returns (seconds spent, whether cached).</summary>
    private (double Seconds, bool Cached) EnsureBaseModel(SyntheticWorld world)
    {
        string signaturePath = Path.Combine(BaseModelDirectory, "demo-signature.json");
        string signature = JsonSerializer.Serialize(new
        {
            options.Seed, options.World, options.Model, options.PretrainSteps, options.PretrainLearningRate, options.BatchSize, options.SequenceLength, Version = 1,
        });
        if (!options.ForcePretrain && File.Exists(signaturePath) && File.ReadAllText(signaturePath) == signature)
        {
            Message?.Invoke($"base model: cached in {BaseModelDirectory}");
            return (0, true);
        }
        var clock = Stopwatch.StartNew();
        // Reserve ids beyond the world's words: a vocabulary a few entries larger than needed costs nothing.
        var tokenizer = WordTokenizer.Build(world.AllTexts, maxVocabulary: 4096);
        string staging = BaseModelDirectory + ".tmp";
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }
        tokenizer.Save(staging);
        var config = options.Model with { VocabSize = tokenizer.VocabularySize, BosTokenId = tokenizer.BosId, EosTokenId = tokenizer.EosId, PadTokenId = tokenizer.PadId };
        var corpus = JsonlDataset.Load(Path.Combine(DataDirectory, "pretrain.jsonl"), tokenizer);
        var batcher = new Batcher(corpus, new BatcherOptions
        {
            BatchSize = options.BatchSize, SequenceLength = options.SequenceLength, Mode = BatchingMode.Packing, SeparatorId = tokenizer.EosId, Seed = options.Seed, DropLast = true,
        });
        Message?.Invoke($"pretraining a {config.NumHiddenLayers}-layer Llama (vocabulary {config.VocabSize}) on {corpus.Sum(e => e.Length):N0} tokens for {options.PretrainSteps} steps");
        using (var model = LlamaModel.CreateRandom(config, (ulong)options.Seed))
        {
            var trainingOptions = new TrainingOptions
            {
                MaxSteps = options.PretrainSteps, LearningRate = options.PretrainLearningRate, WarmupSteps = options.PretrainSteps / 20, WeightDecay = 0.01,
                Schedule = ScheduleKind.Cosine, Seed = (ulong)options.Seed, OutputDirectory = staging,
            };
            using var trainer = new Trainer(model, new FullFineTuning(), new BatcherSource(batcher), trainingOptions);
            trainer.StepCompleted += metrics => StepCompleted?.Invoke("pretrain", metrics, options.PretrainSteps);
            trainer.Train();
            model.Save(staging);
        }
        File.WriteAllText(Path.Combine(staging, "demo-signature.json"), signature);
        if (Directory.Exists(BaseModelDirectory))
        {
            Directory.Delete(BaseModelDirectory, recursive: true);
        }
        Directory.Move(staging, BaseModelDirectory);
        return (clock.Elapsed.TotalSeconds, false);
    }

    private DemoRow FineTune(DemoMethod method, ITextTokenizer tokenizer, SyntheticWorld world, JsonlDataset train, JsonlDataset eval)
    {
        Message?.Invoke($"fine-tuning: {method.Name}");
        string output = Path.Combine(options.OutputDirectory, "runs", Slug(method.Name));
        if (Directory.Exists(output))
        {
            Directory.Delete(output, recursive: true);
        }
        var batcherOptions = new BatcherOptions
        {
            BatchSize = options.BatchSize, SequenceLength = options.SequenceLength, Mode = BatchingMode.Padding, PadId = tokenizer.PadId ?? 0, Seed = options.Seed,
        };
        var evalBatches = DatasetBatches.EvaluationBatches(eval, options.BatchSize, tokenizer.PadId ?? 0);
        using var model = LlamaModel.Load(BaseModelDirectory);
        var rewardBatches = DatasetBatches.EvaluationBatches(train.Take(new IstOptions().RewardBatchSize).ToList(), options.BatchSize, tokenizer.PadId ?? 0);
        var trainingMethod = method.Create(rewardBatches);
        CpuBackend.Instance.ResetPeakMemory();
        var clock = Stopwatch.StartNew();
        var trainingOptions = new TrainingOptions
        {
            MaxSteps = options.FineTuneSteps, LearningRate = method.LearningRate, WarmupSteps = options.FineTuneSteps / 10, Schedule = ScheduleKind.Cosine,
            Seed = (ulong)options.Seed, OutputDirectory = output,
        };
        using var trainer = new Trainer(model, trainingMethod, new BatcherSource(new Batcher(train, batcherOptions)), trainingOptions, evalBatches);
        trainer.StepCompleted += metrics => StepCompleted?.Invoke(method.Name, metrics, options.FineTuneSteps);
        var history = trainer.Train();
        double seconds = clock.Elapsed.TotalSeconds;
        long peak = CpuBackend.Instance.MemoryInUse.Peak;
        string resultDirectory = Path.Combine(output, "result");
        trainingMethod.SaveResult(model, resultDirectory);
        long storedBytes = Directory.EnumerateFiles(resultDirectory).Where(f => f.EndsWith(".safetensors", StringComparison.Ordinal)).Sum(f => new FileInfo(f).Length);
        // What the optimizer updates over the run (IST trains a different part each step).
        long trainable = trainer.Optimizer.Groups.SelectMany(group => group.Parameters).Sum(p => p.Data.ElementCount);
        var accuracy = ExactMatch.Evaluate(model, tokenizer, world.FineTuneEval);
        var inDistribution = ExactMatch.Evaluate(model, tokenizer, world.FineTuneEvalInDistribution);
        // Training throughput: tokens over the time spent in steps (Tokens / TokensPerSecond is each step's duration).
        double tokensPerSecond = history.Sum(m => m.Tokens) / history.Sum(m => m.Tokens / m.TokensPerSecond);
        var row = new DemoRow(method.Name, trainable, storedBytes, peak, seconds, tokensPerSecond, history[^1].EvalLoss ?? double.NaN, accuracy.Accuracy, inDistribution.Accuracy);
        Message?.Invoke($"{method.Name}: exact match {row.Accuracy:P1} (held-out phrasing), {row.InDistributionAccuracy:P1} (training phrasing), eval loss {row.EvalLoss:F3}, {seconds:F0} s");
        foreach (var (item, generated) in accuracy.Misses.Take(3))
        {
            Message?.Invoke($"  miss: \"{item.Prompt}\" expected \"{item.Response}\", got \"{generated}\"");
        }
        return row;
    }

    private static string Slug(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) ? char.ToLowerInvariant(c) : '-'));
}
