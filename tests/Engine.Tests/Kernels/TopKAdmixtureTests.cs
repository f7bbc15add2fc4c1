using Engine.Autograd;
using Engine.Cpu;
using Engine.Tests.Conformance;
using Engine.Tests.Support;

namespace Engine.Tests.Kernels;

/// <summary>
/// The top-k admixture where random conformance inputs do not reach: many rows sharing bank vectors (the bank gradient's
/// threaded scatter-add), ties, −inf logits, k outside [1, N], and exact zeros off the selection.
/// </summary>
public class TopKAdmixtureTests
{
    public static TheoryData<DType> DTypes => new() { DType.Float32, DType.Float64 };

    /// <summary>Vectors 1, 3 and 4 of five get +10 on every row, so each row's top 2 is two of them: 256 rows share 3 vectors.</summary>
    private static readonly int[] FavouredVectors = [1, 3, 4];

    private const int SharedRows = 256, SharedVectorCount = 5, SharedVectorLength = 64, SharedTopK = 2;

    /// <summary>
    /// 256 rows × k = 2 selections over 64 columns: enough work that both the rows (forward, logits gradient) and the
    /// columns (bank gradient) are split across two threads.
    /// </summary>
    private static OpCase SharedVectorsCase() => new()
    {
        Name = "top-k admixture with shared bank vectors",
        Inputs =
        [
            // Separated rows keep central differences away from ties (see OpCases); the offset makes the choice shared.
            new([SharedRows, SharedVectorCount], Values: random =>
            {
                var logits = TestData.SeparatedRows(random, SharedRows, SharedVectorCount);
                for (int row = 0; row < SharedRows; row++)
                {
                    foreach (int vector in FavouredVectors)
                    {
                        logits[row * SharedVectorCount + vector] += 10;
                    }
                }
                return logits;
            }),
            new([SharedVectorCount, SharedVectorLength]),
        ],
        Build = (v, _) => Ops.TopKAdmixture(v[0], v[1], SharedTopK),
        Reference = (x, _) => Reference.ReferenceOps.TopKAdmixture(x[0], x[1], SharedVectorCount, SharedVectorLength, SharedTopK),
    };

    [Fact]
    public void BankVectorsSharedByManyRowsSumTheirGradients()
    {
        var runner = new CaseRunner(SharedVectorsCase());
        var (_, grads) = runner.Run(DType.Float64, Device.Cpu);
        // By hand: each row weights its two largest favoured logits by their softmax, and adds w · g to those bank rows.
        var expected = new double[SharedVectorCount * SharedVectorLength];
        for (int row = 0; row < SharedRows; row++)
        {
            var logits = runner.Inputs[0].AsSpan(row * SharedVectorCount, SharedVectorCount).ToArray();
            var chosen = FavouredVectors.OrderByDescending(vector => logits[vector]).Take(SharedTopK).ToArray();
            double first = logits[chosen[0]], second = logits[chosen[1]];
            double secondWeight = Math.Exp(second - first) / (1 + Math.Exp(second - first));
            foreach (var (vector, weight) in new[] { (chosen[0], 1 - secondWeight), (chosen[1], secondWeight) })
            {
                for (int column = 0; column < SharedVectorLength; column++)
                {
                    expected[vector * SharedVectorLength + column] += weight * runner.OutputGrad[row * SharedVectorLength + column];
                }
            }
        }
        Assertions.Close(expected, grads[1]!, 1e-12, "bank gradient against the hand-computed sum");
        // Vectors 0 and 2 are never selected: their gradient is exactly zero, not merely small.
        Assert.All(grads[1]![..SharedVectorLength], value => Assert.Equal(0.0, value));
        Assert.All(grads[1]![(2 * SharedVectorLength)..(3 * SharedVectorLength)], value => Assert.Equal(0.0, value));
        runner.CheckGradients(ConformanceTests.GradientTolerance);
    }

    [Fact]
    public void BankGradientIsTheSameBitForBitOnAnyThreadCount()
    {
        var runner = new CaseRunner(SharedVectorsCase());
        using var scope = new TensorScope();
        using var logits = Tensor.FromArray<double>(runner.Inputs[0], [SharedRows, SharedVectorCount]).To(DType.Float32);
        using var bank = Tensor.FromArray<double>(runner.Inputs[1], [SharedVectorCount, SharedVectorLength]).To(DType.Float32);
        using var outputGrad = Tensor.FromArray<double>(runner.OutputGrad, [SharedRows, SharedVectorLength]).To(DType.Float32);
        float[]? single = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var backend = new CpuBackend(0) { Threads = threads };
            using var result = Tensor.Empty([SharedRows, SharedVectorLength]);
            using var indices = Tensor.Empty([SharedRows, SharedTopK], DType.Int32);
            using var weights = Tensor.Empty([SharedRows, SharedTopK]);
            using var bankGrad = Tensor.Zeros([SharedVectorCount, SharedVectorLength]);
            backend.TopKAdmixture(logits, bank, SharedTopK, result, indices, weights);
            backend.TopKAdmixtureBackward(bank, indices, weights, outputGrad, null, bankGrad);
            var values = bankGrad.ToArray<float>();
            single ??= values;
            Assert.Equal(single, values);
        }
    }

    [Theory]
    [MemberData(nameof(DTypes))]
    public void TiesSelectTheLowerIndexFirst(DType dtype)
    {
        double[] logits =
        [
            0.5, 0.5, 0.5, 0.5, 0.5,    // all equal: the three lowest indices
            0.1, 0.7, 0.3, 0.7, 0.3,    // 0.7 at 1 and 3 in index order, then the tie for third place goes to index 2 over 4
            0.3, 0.2, 0.9, 0.3, 0.3,    // the maximum first, then the lowest two of the three equal 0.3s
            -1, 2, 2, -1, 2,            // all three 2s, ascending
        ];
        int[][] expectedIndices = [[0, 1, 2], [1, 3, 2], [2, 0, 3], [1, 2, 4]];
        using var scope = new TensorScope();
        var bank = Tensor.Uniform([5, 7], -1, 1, seed: 3, dtype);
        var (output, indices, weights) = Forward(Tensor.FromArray<double>(logits, [4, 5]).To(dtype), bank, topK: 3);
        var bankValues = Read(bank);
        for (int row = 0; row < 4; row++)
        {
            Assert.Equal(expectedIndices[row], indices[(row * 3)..((row + 1) * 3)]);
            var selectedLogits = expectedIndices[row].Select(index => logits[row * 5 + index]).ToArray();
            var expectedWeights = Reference.ReferenceOps.Softmax(selectedLogits);
            Assertions.Close(expectedWeights, weights[(row * 3)..((row + 1) * 3)], 1e-6, $"weights of row {row}");
            var expectedOutput = new double[7];
            for (int slot = 0; slot < 3; slot++)
            {
                for (int column = 0; column < 7; column++)
                {
                    expectedOutput[column] += expectedWeights[slot] * bankValues[expectedIndices[row][slot] * 7 + column];
                }
            }
            Assertions.Close(expectedOutput, output[(row * 7)..((row + 1) * 7)], 1e-6, $"output of row {row}");
        }
    }

    /// <summary>
    /// Rows of 37 entries drawn from four values (ties everywhere), long enough that the selection skips whole vectors:
    /// the chosen indices must be those of a full sort by descending value, then ascending index.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void ManyTiesSelectAsAFullSortByValueThenIndex(DType dtype)
    {
        const int rowCount = 50, vectorCount = 37;
        var random = new Random(23);
        var logits = Enumerable.Range(0, rowCount * vectorCount).Select(_ => (double)random.Next(4)).ToArray();
        using var scope = new TensorScope();
        var bank = Tensor.Zeros([vectorCount, 3], dtype);
        foreach (int topK in new[] { 1, 2, 4, 9 })
        {
            var (_, indices, _) = Forward(Tensor.FromArray<double>(logits, [rowCount, vectorCount]).To(dtype), bank, topK);
            for (int row = 0; row < rowCount; row++)
            {
                var expected = Enumerable.Range(0, vectorCount).OrderByDescending(i => logits[row * vectorCount + i]).ThenBy(i => i).Take(topK).ToArray();
                Assert.Equal(expected, indices[(row * topK)..((row + 1) * topK)]);
            }
        }
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(6)]
    public void TopKOutsideOneToNIsRejectedNamingKAndN(int topK)
    {
        using var scope = new TensorScope();
        var logits = new Variable(Tensor.Zeros([3, 5]), requiresGrad: true);
        var bank = new Variable(Tensor.Zeros([5, 4]), requiresGrad: true);
        var error = Assert.Throws<ArgumentException>(() => Ops.TopKAdmixture(logits, bank, topK));
        Assert.Contains($"k = {topK}", error.Message);
        Assert.Contains("N = 5", error.Message);
        Assert.Contains("float32[3, 5]", error.Message);
        Assert.Contains("float32[5, 4]", error.Message);
        // The backend checks k itself too (it is callable without autograd).
        int columns = Math.Max(topK, 1);
        var backendError = Assert.Throws<ArgumentException>(() => CpuBackend.Instance.TopKAdmixture(logits.Data, bank.Data, topK,
            Tensor.Empty([3, 4]), Tensor.Empty([3, columns], DType.Int32), Tensor.Empty([3, columns])));
        Assert.Contains($"k = {topK}", backendError.Message);
        Assert.Contains("N = 5", backendError.Message);
    }

    /// <summary>
    /// A top-k-only adapter is loaded as logits log(w) at the kept indices and −inf elsewhere: the admixture must give back
    /// exactly those weights, and a −inf that is selected (fewer finite logits than k) must weigh 0 and pass no NaN to backward.
    /// </summary>
    [Theory]
    [MemberData(nameof(DTypes))]
    public void NegativeInfinityLogitsGetZeroWeight(DType dtype)
    {
        double minus = double.NegativeInfinity;
        double[] logits =
        [
            minus, Math.Log(0.7), minus, Math.Log(0.3), minus, minus,   // two kept entries: weights 0.7 and 0.3
            minus, minus, 0.25, minus, minus, minus,                    // one finite entry: it, then the lowest −inf (index 0) at weight 0
        ];
        using var scope = new TensorScope();
        using var tape = new Tape();
        var logitsVariable = new Variable(Tensor.FromArray<double>(logits, [2, 6]).To(dtype), requiresGrad: true);
        var bankVariable = new Variable(Tensor.Uniform([6, 4], -1, 1, seed: 8, dtype), requiresGrad: true);
        var output = Ops.TopKAdmixture(logitsVariable, bankVariable, topK: 2);
        var bank = Read(bankVariable.Data);
        var expected = new double[8];
        for (int column = 0; column < 4; column++)
        {
            expected[column] = 0.7 * bank[4 + column] + 0.3 * bank[12 + column];
            expected[4 + column] = bank[8 + column];
        }
        Assertions.Close(expected, Read(output.Data), 1e-6, "output with −inf logits");
        var (_, indices, weights) = Forward(logitsVariable.Data, bankVariable.Data, topK: 2);
        Assert.Equal(new[] { 1, 3, 2, 0 }, indices);
        Assert.Equal(0.0, weights[3]);

        double[] outputGrad = [0.5, -1, 2, 0.25, 1, -0.5, 0.75, 2];
        tape.Backward(output, Tensor.FromArray<double>(outputGrad, [2, 4]).To(dtype));
        var logitsGrad = Read(logitsVariable.Grad!);
        Assert.All(logitsGrad, value => Assert.True(double.IsFinite(value), $"logits gradient {value} is not finite"));
        foreach (int entry in new[] { 0, 2, 4, 5, 6, 7, 9, 10, 11 })
        {
            Assert.Equal(0.0, logitsGrad[entry]);
        }
        // Row 1: one vector carries all the weight, so moving its logit changes nothing: d logit = 1 · (c − 1 · c) = 0.
        Assert.Equal(0.0, logitsGrad[8]);
        var bankGrad = Read(bankVariable.Grad!);
        var expectedBankGrad = new double[24];
        for (int column = 0; column < 4; column++)
        {
            expectedBankGrad[4 + column] = 0.7 * outputGrad[column];
            expectedBankGrad[12 + column] = 0.3 * outputGrad[column];
            expectedBankGrad[8 + column] = outputGrad[4 + column];
        }
        Assertions.Close(expectedBankGrad, bankGrad, 1e-6, "bank gradient with −inf logits");
    }

    [Fact]
    public void RowWithoutAFiniteLogitIsRejected()
    {
        using var scope = new TensorScope();
        var logits = new Variable(Tensor.FromArray<float>([0.5f, 1, 2, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity], 2, 3));
        var bank = new Variable(Tensor.Zeros([3, 4]));
        var error = Assert.Throws<ArgumentException>(() => Ops.TopKAdmixture(logits, bank, topK: 1));
        Assert.Contains("row 1", error.Message);
        Assert.Contains("float32[2, 3]", error.Message);
    }

    [Theory]
    [MemberData(nameof(DTypes))]
    public void LogitsGradientIsExactlyZeroOffTheSelection(DType dtype)
    {
        const int rowCount = 9, vectorCount = 11, topK = 3;
        var random = new Random(17);
        var logitValues = TestData.SeparatedRows(random, rowCount, vectorCount);
        using var scope = new TensorScope();
        using var tape = new Tape();
        var logits = new Variable(Tensor.FromArray<double>(logitValues, [rowCount, vectorCount]).To(dtype), requiresGrad: true);
        var bank = new Variable(Tensor.Uniform([vectorCount, 6], -1, 1, seed: 4, dtype));
        var output = Ops.TopKAdmixture(logits, bank, topK);
        tape.Backward(output, Tensor.Uniform([rowCount, 6], -1, 1, seed: 5, dtype));
        // A frozen bank gets no gradient buffer: the backward computed only what was needed.
        Assert.Null(bank.Grad);
        var gradient = Read(logits.Grad!);
        for (int row = 0; row < rowCount; row++)
        {
            var selected = Enumerable.Range(0, vectorCount).OrderByDescending(i => logitValues[row * vectorCount + i]).Take(topK).ToHashSet();
            for (int entry = 0; entry < vectorCount; entry++)
            {
                double value = gradient[row * vectorCount + entry];
                if (selected.Contains(entry))
                {
                    Assert.NotEqual(0.0, value);
                }
                else
                {
                    Assert.Equal(0.0, value);
                }
            }
        }
    }

    /// <summary>Runs the backend's forward directly; returns the output, the selected indices and weights (as float64).</summary>
    private static (double[] Output, int[] Indices, double[] Weights) Forward(Tensor logits, Tensor bank, int topK)
    {
        int rowCount = (int)(logits.ElementCount / logits.Dim(-1));
        using var result = Tensor.Empty([rowCount, bank.Dim(1)], logits.DType);
        using var indices = Tensor.Empty([rowCount, topK], DType.Int32);
        using var weights = Tensor.Empty([rowCount, topK], logits.DType);
        CpuBackend.Instance.TopKAdmixture(logits, bank, topK, result, indices, weights);
        return (Read(result), indices.ToArray<int>(), Read(weights));
    }

    private static double[] Read(Tensor tensor)
    {
        using var asDouble = tensor.To(DType.Float64);
        return asDouble.ToArray<double>();
    }
}
