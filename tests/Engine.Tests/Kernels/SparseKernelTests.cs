using Engine.Autograd;
using Engine.Cpu;
using Engine.Tests.Conformance;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// SpIEL's kernels at the backend level: the flat scatter, the sampled weight gradient (SDDMM) against the dense gᵀx,
/// the sparse-delta linear layer's exact restore of W, top-k indices against a full sort, and the SM3 and aged AdamW
/// steps against float64 references written here.
/// </summary>
public class SparseKernelTests
{
    public static TheoryData<DType> DTypes => new() { DType.Float32, DType.Float64 };

    // ------------------------------------------------------------ scatter

    [Fact]
    public void ScatterFlatSetsTheEntriesAtTheIndices()
    {
        using var scope = new TensorScope();
        foreach (var indexType in new[] { DType.Int32, DType.Int64 })
        {
            var destination = Tensor.FromArray<float>([1, 2, 3, 4, 5, 6], 2, 3);
            using var indices = Tensor.FromArray<int>([5, 0, 3], 3).To(indexType);
            CpuBackend.Instance.ScatterFlat(destination, indices, Tensor.FromArray<float>([-1, -2, -3], 3));
            // Set, not added: an add would give 5, −1 and 1 at indices 5, 0 and 3.
            Assert.Equal(new float[] { -2, 2, 3, -3, 5, -1 }, destination.ToArray<float>());
        }
    }

    [Fact]
    public void ScatterFlatRejectsAnOutOfRangeIndexBeforeWritingAnything()
    {
        using var scope = new TensorScope();
        var destination = Tensor.FromArray<double>([1, 2, 3, 4, 5, 6], 2, 3);
        var indices = Tensor.FromArray<int>([0, 6, 2], 3);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.Instance.ScatterFlat(destination, indices, Tensor.FromArray<double>([7, 8, 9], 3)));
        Assert.Contains("index 6", error.Message);
        Assert.Contains("[0, 6)", error.Message);
        Assert.Equal(new double[] { 1, 2, 3, 4, 5, 6 }, destination.ToArray<double>());
    }

    // ------------------------------------------------------------ sampled weight gradient

    [Theory]
    [MemberData(nameof(DTypes))]
    public void SampledWeightGradientEqualsTheDenseGradientAtTheIndices(DType dtype)
    {
        // out and in past the 32-wide transpose tiles and not multiples of them; token counts 1, odd, and a vector multiple.
        const int outFeatures = 37, inFeatures = 45, deltaCount = 300;
        double tolerance = dtype == DType.Float32 ? 1e-5 : 1e-12;
        using var scope = new TensorScope();
        var indices = Tensor.FromArray<int>(OpCases.UniqueIndices(new Random(3), deltaCount, outFeatures * inFeatures), deltaCount);
        foreach (int tokenCount in new[] { 1, 7, 33, 64 })
        {
            var outputGrad = Tensor.Uniform([tokenCount, outFeatures], -1, 1, seed: (ulong)tokenCount, dtype);
            var input = Tensor.Uniform([tokenCount, inFeatures], -1, 1, seed: (ulong)tokenCount + 100, dtype);
            var expected = DenseWeightGradientAt(outputGrad, input, indices);
            foreach (int threads in new[] { 1, 2, 3 })
            {
                var backend = new CpuBackend(0) { Threads = threads };
                // beta = 0 overwrites: NaN already in the result must not leak through.
                var result = Tensor.Full([deltaCount], double.NaN, dtype);
                backend.SampledWeightGradient(outputGrad, input, indices, result, 0);
                Assertions.Close(expected, Read(result), tolerance, $"beta 0, T = {tokenCount}, {threads} threads");
                // beta = 1 accumulates: a second micro-batch adds its gradient to the first.
                backend.SampledWeightGradient(outputGrad, input, indices, result, 1);
                Assertions.Close(expected.Select(value => 2 * value).ToArray(), Read(result), tolerance, $"beta 1, T = {tokenCount}, {threads} threads");
            }
        }
    }

    [Fact]
    public void SampledWeightGradientChecksShapesAndIndices()
    {
        using var scope = new TensorScope();
        var outputGrad = Tensor.Zeros([4, 3]);
        var result = Tensor.Zeros([2]);
        var error = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.SampledWeightGradient(outputGrad, Tensor.Zeros([5, 6]), Tensor.FromArray<int>([0, 1], 2), result, 0));
        Assert.Contains("float32[4, 3]", error.Message);
        Assert.Contains("float32[5, 6]", error.Message);
        var rangeError = Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.Instance.SampledWeightGradient(outputGrad, Tensor.Zeros([4, 6]), Tensor.FromArray<int>([0, 18], 2), result, 0));
        Assert.Contains("index 18", rangeError.Message);
        Assert.Contains("[0, 18)", rangeError.Message);
    }

    // ------------------------------------------------------------ sparse-delta linear

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void SparseDeltaLinearRestoresTheWeightBitForBit(bool weightTrains)
    {
        const int outFeatures = 64, inFeatures = 48, deltaCount = 500;
        using var scope = new TensorScope();
        using var tape = new Tape();
        var weight = new Variable(Tensor.Normal([outFeatures, inFeatures], 0, 1, seed: 1), requiresGrad: weightTrains);
        // Values of mixed magnitudes: (w + v) − v rounds away from w for many of these entries.
        var deltas = Tensor.Normal([deltaCount], 0, 1, seed: 2);
        deltas.Backend.Binary(BinaryOp.Mul, deltas, Tensor.Uniform([deltaCount], 0, 1000, seed: 3), deltas);
        var values = new Variable(deltas, requiresGrad: true);
        var indexValues = OpCases.UniqueIndices(new Random(4), deltaCount, outFeatures * inFeatures);
        var indices = Tensor.FromArray<int>(indexValues, deltaCount);
        var original = weight.Data.ToArray<float>();
        var deltaValues = deltas.ToArray<float>();
        Assert.Contains(Enumerable.Range(0, deltaCount), entry => original[indexValues[entry]] + deltaValues[entry] - deltaValues[entry] != original[indexValues[entry]]);

        var input = new Variable(Tensor.Normal([3, 5, inFeatures], 0, 1, seed: 5), requiresGrad: true);
        var output = Ops.SparseDeltaLinear(input, weight, indices, values);
        Assert.Equal(original, weight.Data.ToArray<float>());
        tape.Backward(output, Tensor.Normal([3, 5, outFeatures], 0, 1, seed: 6));
        Assert.Equal(original, weight.Data.ToArray<float>());
        Assert.Equal(weightTrains, weight.Grad is not null);
    }

    [Fact]
    public void SparseDeltaLinearValueGradientIsTheDenseWeightGradientAtTheIndices()
    {
        const int tokenCount = 24, outFeatures = 40, inFeatures = 70, deltaCount = 150;
        using var scope = new TensorScope();
        using var tape = new Tape();
        var weight = new Variable(Tensor.Normal([outFeatures, inFeatures], 0, 1, seed: 7));
        var values = new Variable(Tensor.Normal([deltaCount], 0, 0.1, seed: 8), requiresGrad: true);
        var indices = Tensor.FromArray<int>(OpCases.UniqueIndices(new Random(9), deltaCount, outFeatures * inFeatures), deltaCount);
        var input = Tensor.Normal([2, tokenCount / 2, inFeatures], 0, 1, seed: 10);
        var outputGrad = Tensor.Normal([2, tokenCount / 2, outFeatures], 0, 1, seed: 11);
        (int[] Shape, float[] Values)? observedGradient = null, observedInput = null;
        var output = Ops.SparseDeltaLinear(new Variable(input), weight, indices, values, (gradientRows, inputRows) =>
        {
            Assert.True(gradientRows.IsContiguous && inputRows.IsContiguous);
            // The views die with the backward's temporaries: read them now.
            observedGradient = (gradientRows.ShapeArray(), gradientRows.ToArray<float>());
            observedInput = (inputRows.ShapeArray(), inputRows.ToArray<float>());
        });
        tape.Backward(output, outputGrad);
        // A frozen weight gets no dense gradient; the values' gradient is dW = gᵀx at the indices all the same.
        Assert.Null(weight.Grad);
        using var gradientRows = outputGrad.Reshape(tokenCount, outFeatures);
        using var inputRows = input.Reshape(tokenCount, inFeatures);
        Assertions.Close(DenseWeightGradientAt(gradientRows, inputRows, indices), Read(values.Grad!), 1e-5, "values gradient against the dense dW");
        Assert.NotNull(observedGradient);
        Assert.Equal([tokenCount, outFeatures], observedGradient.Value.Shape);
        Assert.Equal([tokenCount, inFeatures], observedInput!.Value.Shape);
        Assert.Equal(gradientRows.ToArray<float>(), observedGradient.Value.Values);
        Assert.Equal(inputRows.ToArray<float>(), observedInput.Value.Values);
    }

    [Fact]
    public void SparseDeltaLinearRejectsMismatchedOperandsNamingTheirShapes()
    {
        using var scope = new TensorScope();
        var weight = new Variable(Tensor.Zeros([4, 6]));
        var input = new Variable(Tensor.Zeros([3, 6]));
        var values = new Variable(Tensor.Zeros([3]), requiresGrad: true);
        var shapeError = Assert.Throws<ArgumentException>(() => Ops.SparseDeltaLinear(new Variable(Tensor.Zeros([3, 5])), weight, Tensor.FromArray<int>([0, 1, 2], 3), values));
        Assert.Contains("float32[3, 5]", shapeError.Message);
        Assert.Contains("float32[4, 6]", shapeError.Message);
        var countError = Assert.Throws<ArgumentException>(() => Ops.SparseDeltaLinear(input, weight, Tensor.FromArray<int>([0, 1], 2), values));
        Assert.Contains("int32[2]", countError.Message);
        Assert.Contains("float32[3]", countError.Message);
        var typeError = Assert.Throws<ArgumentException>(() => Ops.SparseDeltaLinear(input, weight, Tensor.FromArray<long>([0, 1, 2], 3), values));
        Assert.Contains("int64[3]", typeError.Message);
    }

    // ------------------------------------------------------------ top-k indices

    /// <summary>Many seeds and sizes, heavy ties (five values, both zeros), plain and absolute, k from 1 to n.</summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void TopKIndicesMatchesAFullSort(DType dtype)
    {
        double[] levels = [-2, -1, -0.0, 0, 1.5, 2];
        foreach (int count in new[] { 1, 2, 3, 17, 1000, 100_000 })
        {
            for (int seed = 0; seed < 4; seed++)
            {
                var random = new Random(count * 10 + seed);
                // Seeds 0 and 1 draw from few values (ties everywhere), seeds 2 and 3 from a continuum.
                var scores = Enumerable.Range(0, count).Select(_ => seed < 2 ? levels[random.Next(levels.Length)] : (double)(float)(random.NextDouble() * 4 - 2)).ToArray();
                foreach (bool absolute in new[] { false, true })
                {
                    var ranking = Ranking(scores, absolute);
                    foreach (int k in new[] { 1, Math.Max(1, count / 100), count / 2 + 1, count }.Distinct())
                    {
                        Assert.Equal(TopOf(ranking, k), TopK(scores, k, absolute, dtype, CpuBackend.Instance));
                    }
                }
            }
        }
    }

    /// <summary>
    /// Eight hundred thousand elements over three and seven threads: three chunks, ties straddling chunk boundaries. The
    /// scores are integers, so the full sort runs on one composite key: (49 − score) · count + index.
    /// </summary>
    [Fact]
    public void TopKIndicesIsTheSameOverManyChunks()
    {
        const int count = 800_003;
        var random = new Random(5);
        var scores = Enumerable.Range(0, count).Select(_ => (double)random.Next(50)).ToArray();
        var ranking = Enumerable.Range(0, count).Select(index => (long)(49 - scores[index]) * count + index).ToArray();
        Array.Sort(ranking);
        foreach (int k in new[] { 1, 10_000, 333_333 })
        {
            var expected = ranking.Take(k).Select(key => (int)(key % count)).Order().ToArray();
            foreach (int threads in new[] { 3, 7 })
            {
                Assert.Equal(expected, TopK(scores, k, absolute: false, DType.Float32, new CpuBackend(0) { Threads = threads }));
            }
        }
    }

    /// <summary>
    /// −inf excludes positions; when fewer than k are finite, the lowest-index −inf ones fill up. With absolute, −inf is the
    /// largest magnitude instead.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void TopKIndicesTreatsNegativeInfinityAsAnExclusion(DType dtype)
    {
        double minus = double.NegativeInfinity;
        double[] scores = [minus, 3, minus, -5, 0.5, minus, 2, minus];
        Assert.Equal(new[] { 1, 4, 6 }, TopK(scores, 3, absolute: false, dtype, CpuBackend.Instance));
        Assert.Equal(new[] { 0, 1, 2, 3, 4, 6 }, TopK(scores, 6, absolute: false, dtype, CpuBackend.Instance));
        Assert.Equal(new[] { 0, 2, 5 }, TopK(scores, 3, absolute: true, dtype, CpuBackend.Instance));
        var random = new Random(12);
        var excluded = Enumerable.Range(0, 50_000).Select(_ => random.Next(3) == 0 ? minus : random.Next(100)).ToArray();
        int finite = excluded.Count(double.IsFinite);
        var ranking = Ranking(excluded, absolute: false);
        foreach (int k in new[] { finite / 2, finite, finite + 100 })
        {
            Assert.Equal(TopOf(ranking, k), TopK(excluded, k, absolute: false, dtype, CpuBackend.Instance));
        }
    }

    /// <summary>
    /// Ten million elements (a Llama-7B MLP matrix is 45M), checked in linear time: a full sort would take far longer than
    /// the selection. 401 distinct values of both signs, so the threshold magnitude is shared by thousands of entries.
    /// </summary>
    [Fact]
    public void TopKIndicesSelectsFromTenMillionElements()
    {
        const int count = 10_000_000, k = 100_000;
        var random = new Random(13);
        var scores = new float[count];
        for (int i = 0; i < count; i++)
        {
            scores[i] = (random.Next(401) - 200) / 64f;
        }
        using var scope = new TensorScope();
        var tensor = Tensor.FromArray<float>(scores, count);
        var result = Tensor.Empty([k], DType.Int32);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        CpuBackend.Instance.TopKIndices(tensor, k, absolute: true, result);
        watch.Stop();
        RequireExactTopK(scores.Select(MathF.Abs).ToArray(), k, result.ToArray<int>());
        Assert.True(watch.Elapsed.TotalSeconds < 2, $"top-k of {count} elements took {watch.Elapsed.TotalSeconds:F2} s");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    [InlineData(6)]
    public void TopKIndicesRejectsKOutsideOneToTheCount(int k)
    {
        using var scope = new TensorScope();
        var scores = Tensor.Zeros([5]);
        var error = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.TopKIndices(scores, k, absolute: false, Tensor.Empty([Math.Max(k, 1)], DType.Int32)));
        Assert.Contains($"k = {k}", error.Message);
        Assert.Contains("element count 5", error.Message);
    }

    [Theory]
    [MemberData(nameof(DTypes))]
    public void TopKIndicesRejectsNaNNamingItsIndex(DType dtype)
    {
        using var scope = new TensorScope();
        var scores = Tensor.FromArray<double>([1, 2, double.NaN, 4, double.NaN], 5).To(dtype);
        foreach (bool absolute in new[] { false, true })
        {
            var error = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.TopKIndices(scores, 2, absolute, Tensor.Empty([2], DType.Int32)));
            Assert.Contains("NaN at index 2", error.Message);
        }
    }

    // ------------------------------------------------------------ SM3

    /// <summary>
    /// Two steps on a 5×7 matrix whose 12 entries share rows and columns (rows 1 and 3 hold four entries each, column 2
    /// five), so each accumulator takes the max over several ν, and the second step reads accumulators the first one set.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void Sm3SparseStepMatchesAFloat64Reference(DType dtype)
    {
        const int outFeatures = 5, inFeatures = 7;
        int[] indices = [1 * 7 + 2, 1 * 7 + 0, 3 * 7 + 2, 1 * 7 + 6, 3 * 7 + 5, 0 * 7 + 2, 3 * 7 + 0, 4 * 7 + 4, 1 * 7 + 3, 3 * 7 + 1, 2 * 7 + 2, 4 * 7 + 2];
        var random = new Random(14);
        double[] NextGradient() => indices.Select(_ => (double)(float)(random.NextDouble() * 2 - 1)).ToArray();
        var values = indices.Select(_ => (double)(float)random.NextDouble()).ToArray();
        var rows = new double[outFeatures];
        var columns = new double[inFeatures];
        using var scope = new TensorScope();
        var valuesTensor = Tensor.FromArray<double>(values, indices.Length).To(dtype);
        var rowTensor = Tensor.Zeros([outFeatures], dtype);
        var columnTensor = Tensor.Zeros([inFeatures], dtype);
        var indexTensor = Tensor.FromArray<int>(indices, indices.Length);
        double tolerance = dtype == DType.Float32 ? 1e-6 : 1e-14;
        for (int step = 0; step < 2; step++)
        {
            var gradient = NextGradient();
            Sm3Reference(values, gradient, indices, inFeatures, rows, columns, learningRate: 0.1, epsilon: 1e-8);
            CpuBackend.Instance.Sm3SparseStep(valuesTensor, Tensor.FromArray<double>(gradient, indices.Length).To(dtype), indexTensor, inFeatures, rowTensor, columnTensor, 0.1, 1e-8);
            Assertions.Close(values, Read(valuesTensor), tolerance, $"values after step {step + 1}");
            Assertions.Close(rows, Read(rowTensor), tolerance, $"row accumulator after step {step + 1}");
            Assertions.Close(columns, Read(columnTensor), tolerance, $"column accumulator after step {step + 1}");
        }
    }

    /// <summary>Enough entries for several threads, every row and column shared by many: the same result as the serial reference.</summary>
    [Fact]
    public void Sm3SparseStepOverManyThreadsMatchesTheReference()
    {
        const int outFeatures = 200, inFeatures = 300, deltaCount = 40_000;
        var indices = OpCases.UniqueIndices(new Random(15), deltaCount, outFeatures * inFeatures);
        var random = new Random(16);
        var values = new double[deltaCount];
        var gradient = Enumerable.Range(0, deltaCount).Select(_ => random.NextDouble() - 0.5).ToArray();
        var rows = Enumerable.Range(0, outFeatures).Select(_ => random.NextDouble() * 0.01).ToArray();
        var columns = Enumerable.Range(0, inFeatures).Select(_ => random.NextDouble() * 0.01).ToArray();
        using var scope = new TensorScope();
        var valuesTensor = Tensor.FromArray<double>(values, deltaCount);
        var rowTensor = Tensor.FromArray<double>(rows, outFeatures);
        var columnTensor = Tensor.FromArray<double>(columns, inFeatures);
        new CpuBackend(0) { Threads = 3 }.Sm3SparseStep(valuesTensor, Tensor.FromArray<double>(gradient, deltaCount), Tensor.FromArray<int>(indices, deltaCount),
            inFeatures, rowTensor, columnTensor, 0.01, 1e-30);
        Sm3Reference(values, gradient, indices, inFeatures, rows, columns, learningRate: 0.01, epsilon: 1e-30);
        Assert.Equal(rows, rowTensor.ToArray<double>());
        Assert.Equal(columns, columnTensor.ToArray<double>());
        Assertions.Close(values, valuesTensor.ToArray<double>(), 1e-14, "values");
    }

    /// <summary>SM3 as SpIEL-MA states it, entry by entry from the accumulators before the step, then max into them.</summary>
    private static void Sm3Reference(double[] values, double[] gradient, int[] indices, int inFeatures, double[] rows, double[] columns, double learningRate, double epsilon)
    {
        var estimates = new double[indices.Length];
        for (int entry = 0; entry < indices.Length; entry++)
        {
            int row = indices[entry] / inFeatures, column = indices[entry] % inFeatures;
            estimates[entry] = Math.Min(rows[row], columns[column]) + gradient[entry] * gradient[entry];
            values[entry] -= learningRate * gradient[entry] / Math.Sqrt(estimates[entry] + epsilon);
        }
        for (int entry = 0; entry < indices.Length; entry++)
        {
            int row = indices[entry] / inFeatures, column = indices[entry] % inFeatures;
            rows[row] = Math.Max(rows[row], estimates[entry]);
            columns[column] = Math.Max(columns[column], estimates[entry]);
        }
    }

    // ------------------------------------------------------------ aged AdamW

    private static readonly AdamWStepSettings AgedSettings = new(LearningRate: 1e-3, Beta1: 0.9, Beta2: 0.999, Epsilon: 1e-6, WeightDecay: 0.01, Step: 0);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(1000)]
    public void AdamWAgedStepWithEqualAgesIsAdamWStepBitForBit(int step)
    {
        const int count = 50_000;
        using var scope = new TensorScope();
        var (plain, aged) = (AdamWState(count, seed: 20), AdamWState(count, seed: 20));
        var age = Tensor.Full([count], step - 1, DType.Int32);
        var gradient = Tensor.Normal([count], 0, 1, seed: 21);
        CpuBackend.Instance.AdamWStep(plain.Parameter, gradient, plain.First, plain.Second, AgedSettings with { Step = step });
        CpuBackend.Instance.AdamWAgedStep(aged.Parameter, gradient, aged.First, aged.Second, age, AgedSettings with { Step = 12345 });
        Assert.Equal(plain.Parameter.ToArray<float>(), aged.Parameter.ToArray<float>());
        Assert.Equal(plain.First.ToArray<float>(), aged.First.ToArray<float>());
        Assert.Equal(plain.Second.ToArray<float>(), aged.Second.ToArray<float>());
        Assert.All(age.ToArray<int>(), value => Assert.Equal(step, value));
    }

    /// <summary>Ages 0 to 600 (more than the kernel caches at once, so cached corrections get replaced) against float64 AdamW per element.</summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void AdamWAgedStepWithMixedAgesMatchesAFloat64Reference(DType dtype)
    {
        const int count = 40_000;
        var random = new Random(22);
        var ages = Enumerable.Range(0, count).Select(_ => random.Next(601)).ToArray();
        using var scope = new TensorScope();
        var state = AdamWState(count, seed: 23, dtype);
        var gradient = Tensor.Normal([count], 0, 1, seed: 24, dtype);
        var (parameter, first, second, gradients) = (Read(state.Parameter), Read(state.First), Read(state.Second), Read(gradient));
        var age = Tensor.FromArray<int>(ages, count);
        new CpuBackend(0) { Threads = 3 }.AdamWAgedStep(state.Parameter, gradient, state.First, state.Second, age, AgedSettings);
        var settings = AgedSettings;
        for (int i = 0; i < count; i++)
        {
            int elementAge = ages[i] + 1;
            parameter[i] *= 1 - settings.LearningRate * settings.WeightDecay;
            first[i] = settings.Beta1 * first[i] + (1 - settings.Beta1) * gradients[i];
            second[i] = settings.Beta2 * second[i] + (1 - settings.Beta2) * gradients[i] * gradients[i];
            double firstUnbiased = first[i] / (1 - Math.Pow(settings.Beta1, elementAge));
            double secondUnbiased = second[i] / (1 - Math.Pow(settings.Beta2, elementAge));
            parameter[i] -= settings.LearningRate * firstUnbiased / (Math.Sqrt(secondUnbiased) + settings.Epsilon);
        }
        double tolerance = dtype == DType.Float32 ? 1e-6 : 1e-13;
        Assertions.Close(parameter, Read(state.Parameter), tolerance, "parameter");
        Assertions.Close(first, Read(state.First), tolerance, "first moment");
        Assertions.Close(second, Read(state.Second), tolerance, "second moment");
        Assert.Equal(ages.Select(value => value + 1).ToArray(), age.ToArray<int>());
    }

    [Fact]
    public void AdamWAgedStepRejectsNegativeAgesWithoutStepping()
    {
        using var scope = new TensorScope();
        var state = AdamWState(4, seed: 25);
        var before = state.Parameter.ToArray<float>();
        var age = Tensor.FromArray<int>([3, 0, -1, 2], 4);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => CpuBackend.Instance.AdamWAgedStep(state.Parameter, Tensor.Full([4], 1), state.First, state.Second, age, AgedSettings));
        Assert.Contains("[-1, 3]", error.Message);
        Assert.Equal(before, state.Parameter.ToArray<float>());
        Assert.Equal(new[] { 3, 0, -1, 2 }, age.ToArray<int>());
    }

    // ------------------------------------------------------------ helpers

    /// <summary>Parameter, first and second moment (non-negative) of an AdamW state, drawn from a seed.</summary>
    private static (Tensor Parameter, Tensor First, Tensor Second) AdamWState(int count, ulong seed, DType dtype = DType.Float32) =>
        (Tensor.Normal([count], 0, 1, seed, dtype), Tensor.Normal([count], 0, 0.1, seed + 1, dtype), Tensor.Uniform([count], 0, 0.01, seed + 2, dtype));

    /// <summary>The dense weight gradient gᵀx [out, in] by MatMul, gathered at the flat indices.</summary>
    private static double[] DenseWeightGradientAt(Tensor outputGrad, Tensor input, Tensor indices)
    {
        using var dense = Tensor.Empty([outputGrad.Dim(1), input.Dim(1)], outputGrad.DType);
        using (var gradientTransposed = outputGrad.Transpose(0, 1))
        {
            CpuBackend.Instance.MatMul(gradientTransposed, input, dense, 1, 0);
        }
        using var gathered = Tensor.Empty(indices.Shape, outputGrad.DType);
        CpuBackend.Instance.GatherFlat(dense, indices, gathered);
        return Read(gathered);
    }

    private static int[] TopK(double[] scores, int k, bool absolute, DType dtype, CpuBackend backend)
    {
        using var scope = new TensorScope();
        var tensor = Tensor.FromArray<double>(scores, scores.Length).To(dtype);
        var result = Tensor.Empty([k], DType.Int32);
        backend.TopKIndices(tensor, k, absolute, result);
        return result.ToArray<int>();
    }

    /// <summary>Every index in a full sort by descending score (|score| when absolute), ties by ascending index.</summary>
    private static int[] Ranking(double[] scores, bool absolute) =>
        Enumerable.Range(0, scores.Length).OrderByDescending(i => absolute ? Math.Abs(scores[i]) : scores[i]).ThenBy(i => i).ToArray();

    /// <summary>The first k of a ranking, in index order (the order TopKIndices writes).</summary>
    private static int[] TopOf(int[] ranking, int k) => ranking.Take(k).Order().ToArray();

    /// <summary>
    /// The top-k set characterised in linear time: k distinct indices in ascending order, no unselected score above the
    /// smallest selected one, and among scores equal to that threshold, every selected index below every unselected one.
    /// </summary>
    private static void RequireExactTopK(float[] scores, int k, int[] selected)
    {
        Assert.Equal(k, selected.Length);
        var chosen = new bool[scores.Length];
        for (int slot = 0; slot < k; slot++)
        {
            Assert.True(slot == 0 || selected[slot] > selected[slot - 1], $"indices not strictly ascending at slot {slot}");
            chosen[selected[slot]] = true;
        }
        float threshold = selected.Min(index => scores[index]);
        int lastChosenTie = selected.Where(index => scores[index] == threshold).Max();
        for (int index = 0; index < scores.Length; index++)
        {
            if (!chosen[index] && (scores[index] > threshold || (scores[index] == threshold && index < lastChosenTie)))
            {
                Assert.Fail($"unselected index {index} (score {scores[index]}) outranks the selection (threshold {threshold}, last selected tie at {lastChosenTie})");
            }
        }
    }

    private static double[] Read(Tensor tensor)
    {
        using var asDouble = tensor.To(DType.Float64);
        return asDouble.ToArray<double>();
    }
}
