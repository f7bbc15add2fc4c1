namespace Engine.Peft.Spiel;

/// <summary>
/// One targeted matrix's SpIEL state: AG's Adam moments, per-element ages and window statistics (candidates, Σg, Σg²), or
/// MA's SM3 row/column accumulators; and the drop-and-regrow step that keeps indices unique and the count fixed.
/// </summary>
internal sealed class SpielModuleState : IDisposable
{
    private readonly SpielOptions options;

    public SpielModuleState(SpielOptions options, int outFeatures, int inFeatures, int count, DType dtype, Device device)
    {
        this.options = options;
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        if (options.Variant == SpielVariant.AccumulatedGradients)
        {
            FirstMoment = Tensor.Zeros([count], dtype, device);
            SecondMoment = Tensor.Zeros([count], dtype, device);
            Age = Tensor.Zeros([count], DType.Int32, device);
        }
        else
        {
            RowAccumulator = Tensor.Zeros([outFeatures], dtype, device);
            ColumnAccumulator = Tensor.Zeros([inFeatures], dtype, device);
        }
    }

    public SparseDeltaLinear Module { get; set; } = null!;

    public int OutFeatures { get; }

    public int InFeatures { get; }

    public Tensor? FirstMoment { get; }

    public Tensor? SecondMoment { get; }

    /// <summary>AG: each slot's own step count for bias correction (a regrown slot starts at its sample count, not 0).</summary>
    public Tensor? Age { get; }

    /// <summary>
    /// AG: the window's candidate positions (top-k |dW| of its first micro-batch) and their Σg, Σg²; allocated only while a
    /// window accumulates (between its first micro-batch and the reselection), so they cost nothing in steady state.
    /// </summary>
    public Tensor? Candidates { get; private set; }

    public Tensor? GradientSum { get; private set; }

    public Tensor? SquareSum { get; private set; }

    /// <summary>AG: micro-batches accumulated in the current window (0: no candidates yet).</summary>
    public int SampleCount { get; set; }

    /// <summary>Allocates the window's statistics (at its first micro-batch, or when a checkpoint restores a window).</summary>
    public void BeginWindow()
    {
        ReleaseWindow();
        int count = Module.DeltaCount;
        var values = Module.Values.Data;
        using (TensorScope.Untracked())
        {
            Candidates = Tensor.Empty([count], DType.Int32, values.Device);
            GradientSum = Tensor.Empty([count], values.DType, values.Device);
            SquareSum = Tensor.Empty([count], values.DType, values.Device);
        }
        SampleCount = 0;
    }

    internal void ReleaseWindow()
    {
        foreach (var tensor in SelectionTensors)
        {
            tensor.Dispose();
        }
        Candidates = GradientSum = SquareSum = null;
        SampleCount = 0;
    }

    public Tensor? RowAccumulator { get; }

    public Tensor? ColumnAccumulator { get; }

    private IEnumerable<Tensor> OptimizerTensors => new[] { FirstMoment, SecondMoment, Age, RowAccumulator, ColumnAccumulator }.OfType<Tensor>();

    private IEnumerable<Tensor> SelectionTensors => new[] { Candidates, GradientSum, SquareSum }.OfType<Tensor>();

    public long OptimizerBytes => OptimizerTensors.Concat(SelectionTensors).Sum(Bytes);


    /// <summary>Values, indices and optimizer state: what stays allocated between steps.</summary>
    public long SteadyBytes => Bytes(Module.Values.Data) + Bytes(Module.Indices) + OptimizerTensors.Sum(Bytes);

    /// <summary>What a window's statistics take while they exist (AG): an int32 candidate and two sums per tuned parameter.</summary>
    public long SelectionBytes => options.Variant == SpielVariant.AccumulatedGradients
        ? Module.DeltaCount * (long)(DType.Int32.SizeInBytes() + 2 * Module.Values.DType.SizeInBytes())
        : 0;

    private static long Bytes(Tensor tensor) => tensor.ElementCount * tensor.DType.SizeInBytes();

    /// <summary>Tensors a training checkpoint keeps for this module (names relative to the module path); window statistics only while a window is open.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> CheckpointTensors()
    {
        yield return ("sft_delta.indices", Module.Indices);
        foreach (var (name, tensor) in new[]
                 {
                     ("exp_avg", FirstMoment), ("exp_avg_sq", SecondMoment), ("age", Age), ("row_accumulator", RowAccumulator), ("column_accumulator", ColumnAccumulator),
                     ("candidates", SampleCount > 0 ? Candidates : null), ("gradient_sum", SampleCount > 0 ? GradientSum : null), ("square_sum", SampleCount > 0 ? SquareSum : null),
                 })
        {
            if (tensor is not null)
            {
                yield return (name, tensor);
            }
        }
    }

    public void Step(double learningRate, double weightDecay)
    {
        var values = Module.Values;
        if (values.Grad is not { } gradient)
        {
            return;
        }
        var backend = values.Data.Backend;
        if (options.Variant == SpielVariant.AccumulatedGradients)
        {
            backend.AdamWAgedStep(values.Data, gradient, FirstMoment!, SecondMoment!, Age!,
                new AdamWStepSettings(learningRate, options.Beta1, options.Beta2, options.Epsilon, weightDecay, Step: 0));
            return;
        }
        if (weightDecay != 0)
        {
            // Decoupled, as AdamW's: pulls the deltas towards 0 (the pretrained weight).
            backend.Affine(values.Data, 1 - learningRate * weightDecay, 0, values.Data);
        }
        backend.Sm3SparseStep(values.Data, gradient, Module.Indices, InFeatures, RowAccumulator!, ColumnAccumulator!, learningRate, options.Epsilon);
    }

    /// <summary>
    /// Drops the <paramref name="dropCount"/> slots with the smallest |value| (ties: the lower slot) and regrows as many
    /// positions: AG the best |Σg| candidates not still active, MA the best row[i]·col[j] among positions neither active
    /// nor just dropped. A freed slot holds value 0 (the pretrained weight); should fewer new positions qualify, freed
    /// slots keep their dropped positions, so indices stay unique and the count fixed.
    /// </summary>
    public void Reselect(int dropCount)
    {
        var backend = Module.Values.Data.Backend;
        var device = Module.Values.Device;
        int count = Module.DeltaCount;
        var indices = Module.Indices.ToArray<int>();

        // −|value| (not −value², which underflows to a tie below ~1e-23), in float64: the k values are few.
        var magnitudes = ToDoubles(Module.Values.Data).Select(value => -Math.Abs(value)).ToArray();
        using var dropScores = Tensor.FromArray<double>(magnitudes, [count], device);
        var droppedSlots = TopK(dropScores, dropCount);
        var dropped = droppedSlots.Select(slot => indices[slot]).ToHashSet();
        var kept = indices.Where(index => !dropped.Contains(index)).ToHashSet();

        var (grown, seeds) = options.Variant == SpielVariant.AccumulatedGradients ? GrowByGradient(kept, dropCount) : (GrowByAccumulators(indices, dropCount), null);
        var grownSet = grown.ToHashSet();
        // A dropped position that is regrown stays in its slot; the other new positions fill the remaining freed slots in
        // order; freed slots left over (too few positions qualified) keep their dropped position.
        var newPositions = new Queue<int>(grown.Where(index => !dropped.Contains(index)));
        var firstMoment = FirstMoment?.ToArray<float>();
        var secondMoment = SecondMoment?.ToArray<float>();
        var age = Age?.ToArray<int>();
        foreach (int slot in droppedSlots)
        {
            if (!grownSet.Contains(indices[slot]) && newPositions.Count > 0)
            {
                indices[slot] = newPositions.Dequeue();
            }
            if (firstMoment is not null)
            {
                var (mean, meanSquare, samples) = seeds is not null && seeds.TryGetValue(indices[slot], out var seed) ? seed : (0.0, 0.0, 0);
                // Seeded so that Adam's bias-corrected moments start at the window's mean g and mean g² (spiel.md).
                firstMoment[slot] = (float)(mean * (1 - Math.Pow(options.Beta1, samples)));
                secondMoment![slot] = (float)(meanSquare * (1 - Math.Pow(options.Beta2, samples)));
                age![slot] = samples;
            }
        }
        using (var slots = Tensor.FromArray<int>(droppedSlots, [dropCount], device))
        using (var zeros = Tensor.Zeros([dropCount], Module.Values.DType, device))
        {
            backend.ScatterFlat(Module.Values.Data, slots, zeros);
        }
        Upload(Module.Indices, indices);
        if (firstMoment is not null)
        {
            Upload(FirstMoment!, firstMoment);
            Upload(SecondMoment!, secondMoment!);
            Upload(Age!, age!);
            ReleaseWindow();
        }
    }

    /// <summary>AG: the top candidates by |Σg| that are not still active, with their seeds (mean g, mean g², samples).</summary>
    private (List<int> Grown, Dictionary<int, (double Mean, double MeanSquare, int Samples)>? Seeds) GrowByGradient(HashSet<int> kept, int dropCount)
    {
        if (SampleCount == 0)
        {
            return ([], null);
        }
        var candidates = Candidates!.ToArray<int>();
        var sums = ToDoubles(GradientSum!);
        var squares = ToDoubles(SquareSum!);
        var scores = new float[candidates.Length];
        for (int position = 0; position < candidates.Length; position++)
        {
            scores[position] = kept.Contains(candidates[position]) ? float.NegativeInfinity : (float)Math.Abs(sums[position]);
        }
        using var scoreTensor = Tensor.FromArray<float>(scores, [scores.Length], Candidates.Device);
        var chosen = TopK(scoreTensor, Math.Min(dropCount, scores.Length)).Where(position => float.IsFinite(scores[position])).ToList();
        var seeds = chosen.ToDictionary(position => candidates[position], position => (sums[position] / SampleCount, squares[position] / SampleCount, SampleCount));
        return ([.. chosen.Select(position => candidates[position])], seeds);
    }

    /// <summary>MA: the top row[i]·col[j] over positions neither active now nor just dropped.</summary>
    private List<int> GrowByAccumulators(int[] previousIndices, int dropCount)
    {
        var backend = RowAccumulator!.Backend;
        // Freed before the next module's: only one dense score matrix exists at a time.
        using var scores = Tensor.Empty([OutFeatures, InFeatures], RowAccumulator.DType, RowAccumulator.Device);
        using (var rows = RowAccumulator.Reshape(OutFeatures, 1))
        using (var columns = ColumnAccumulator!.Reshape(1, InFeatures))
        {
            backend.MatMul(rows, columns, scores, 1, 0);
        }
        using (var excluded = Tensor.FromArray<int>(previousIndices, [previousIndices.Length], scores.Device))
        using (var negativeInfinity = Tensor.Full([previousIndices.Length], double.NegativeInfinity, scores.DType, scores.Device))
        {
            backend.ScatterFlat(scores, excluded, negativeInfinity);
        }
        long available = (long)OutFeatures * InFeatures - previousIndices.Length;
        var chosen = TopK(scores, (int)Math.Min(dropCount, available));
        return [.. chosen];
    }

    /// <summary>Positions of the k largest entries (ascending position order, ties to the lower position).</summary>
    private static int[] TopK(Tensor scores, int k)
    {
        if (k == 0)
        {
            return [];
        }
        using var result = Tensor.Empty([k], DType.Int32, scores.Device);
        scores.Backend.TopKIndices(scores, k, absolute: false, result);
        return result.ToArray<int>();
    }

    private static double[] ToDoubles(Tensor tensor)
    {
        using var wide = tensor.To(DType.Float64);
        return wide.ToArray<double>();
    }

    private static void Upload<T>(Tensor target, T[] values) where T : unmanaged
    {
        using var host = Tensor.FromArray<T>(values, target.ShapeArray(), target.Device);
        target.CopyFrom(host);
    }

    /// <summary>Indices loaded from a file must be unique and inside the matrix.</summary>
    public void CheckIndices(string path, string key)
    {
        var indices = Module.Indices.ToArray<int>();
        long size = (long)OutFeatures * InFeatures;
        var seen = new HashSet<int>();
        foreach (int index in indices)
        {
            if (index < 0 || index >= size)
            {
                throw new InvalidDataException($"{path}: '{key}' holds index {index}, outside {Module.Name} [{OutFeatures}, {InFeatures}] (0..{size - 1})");
            }
            if (!seen.Add(index))
            {
                throw new InvalidDataException($"{path}: '{key}' holds index {index} twice; SpIEL indices must be unique");
            }
        }
    }

    public void Dispose()
    {
        foreach (var tensor in OptimizerTensors)
        {
            tensor.Dispose();
        }
        Module.Indices.Dispose();
        ReleaseWindow();
    }
}
