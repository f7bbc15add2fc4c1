using Engine.Autograd;
using Engine.Tests.Reference;
using Engine.Tests.Support;
using static Engine.Tests.Reference.ReferenceOps;

namespace Engine.Tests.Conformance;

/// <summary>
/// A floating-point operand of a case: its shape, the domain its random values come from, and whether it gets a gradient.
/// <paramref name="Values"/>, when set, draws the values instead (for operands that need structure independent draws lack).
/// </summary>
public sealed record InputSpec(int[] Shape, Domain Domain = Domain.Signed, bool Differentiable = true, Func<Random, double[]>? Values = null);

/// <summary>An integer operand (indices, targets, positions): fixed values, chosen to include duplicates and edge rows.</summary>
public sealed record IndexSpec(int[] Values, int[] Shape);

/// <summary>One operation at one set of shapes: how to run it through autograd, and its float64 reference.</summary>
public sealed class OpCase
{
    public required string Name { get; init; }

    public required InputSpec[] Inputs { get; init; }

    public IndexSpec[] Indices { get; init; } = [];

    public required Func<Variable[], Tensor[], Variable> Build { get; init; }

    public required Func<double[][], int[][], double[]> Reference { get; init; }

    public override string ToString() => Name;
}

/// <summary>Every differentiable operation, at several shapes including odd sizes and broadcasting.</summary>
public static class OpCases
{
    private static readonly (string Name, UnaryOp Op, Func<double, double> Function, Domain Domain)[] unaryFunctions =
    [
        ("neg", UnaryOp.Neg, x => -x, Domain.Signed),
        ("exp", UnaryOp.Exp, Math.Exp, Domain.Signed),
        ("log", UnaryOp.Log, Math.Log, Domain.Positive),
        ("sqrt", UnaryOp.Sqrt, Math.Sqrt, Domain.Positive),
        ("rsqrt", UnaryOp.Rsqrt, x => 1 / Math.Sqrt(x), Domain.Positive),
        ("square", UnaryOp.Square, x => x * x, Domain.Signed),
        ("relu", UnaryOp.Relu, x => Math.Max(x, 0), Domain.Signed),
        ("sigmoid", UnaryOp.Sigmoid, Sigmoid, Domain.Signed),
        ("silu", UnaryOp.Silu, x => x * Sigmoid(x), Domain.Signed),
        ("gelu", UnaryOp.Gelu, Gelu, Domain.Signed),
    ];

    private static Variable ApplyUnary(UnaryOp op, Variable x) => op switch
    {
        UnaryOp.Neg => Ops.Neg(x),
        UnaryOp.Exp => Ops.Exp(x),
        UnaryOp.Log => Ops.Log(x),
        UnaryOp.Sqrt => Ops.Sqrt(x),
        UnaryOp.Rsqrt => Ops.Rsqrt(x),
        UnaryOp.Square => Ops.Square(x),
        UnaryOp.Relu => Ops.Relu(x),
        UnaryOp.Sigmoid => Ops.Sigmoid(x),
        UnaryOp.Silu => Ops.Silu(x),
        _ => Ops.Gelu(x),
    };

    public static IReadOnlyList<OpCase> All { get; } = Build();

    public static OpCase Get(string name) => All.Single(c => c.Name == name);

    public static IEnumerable<object[]> Names => All.Select(c => new object[] { c.Name });

    private static List<OpCase> Build()
    {
        var cases = new List<OpCase>();

        // Broadcasting binary operations: same shape, trailing-axis broadcast, outer-product broadcast, scalar-like.
        var binaryShapes = new (int[] Left, int[] Right)[] { ([3, 5], [3, 5]), ([2, 3, 5], [5]), ([4, 1], [1, 7]), ([1], [2, 3]), ([2, 1, 3], [2, 4, 1]) };
        var binaryOps = new (string Name, Func<Variable, Variable, Variable> Apply, Func<double, double, double> Function, Domain RightDomain)[]
        {
            ("add", Ops.Add, (a, b) => a + b, Domain.Signed),
            ("sub", Ops.Sub, (a, b) => a - b, Domain.Signed),
            ("mul", Ops.Mul, (a, b) => a * b, Domain.Signed),
            ("div", Ops.Div, (a, b) => a / b, Domain.Positive),
        };
        foreach (var (name, apply, function, rightDomain) in binaryOps)
        {
            foreach (var (left, right) in binaryShapes)
            {
                cases.Add(new OpCase
                {
                    Name = $"{name} {Format(left)} {Format(right)}",
                    Inputs = [new(left), new(right, rightDomain)],
                    Build = (v, _) => apply(v[0], v[1]),
                    Reference = (x, _) => Binary(function, x[0], left, x[1], right),
                });
            }
        }

        cases.Add(new OpCase
        {
            Name = "affine [3, 7]",
            Inputs = [new([3, 7])],
            Build = (v, _) => Ops.Affine(v[0], -1.75, 0.5),
            Reference = (x, _) => Map(x[0], a => -1.75 * a + 0.5),
        });

        foreach (var (name, op, function, domain) in unaryFunctions)
        {
            foreach (var shape in new[] { new[] { 7 }, new[] { 3, 33 } })
            {
                cases.Add(new OpCase
                {
                    Name = $"{name} {Format(shape)}",
                    Inputs = [new(shape, domain)],
                    Build = (v, _) => ApplyUnary(op, v[0]),
                    Reference = (x, _) => Map(x[0], function),
                });
            }
        }

        // Matrix products: plain, folded leading axes, batched, rank 4, and a transposed view read in place.
        cases.Add(MatMulCase([5, 7], [7, 3], (a, b) => MatMul(a, b, 1, 5, 7, 3)));
        cases.Add(MatMulCase([1, 9], [9, 1], (a, b) => MatMul(a, b, 1, 1, 9, 1)));
        cases.Add(MatMulCase([2, 3, 4], [4, 5], (a, b) => MatMul(a, b, 1, 6, 4, 5)));
        cases.Add(MatMulCase([2, 3, 4], [2, 4, 6], (a, b) => MatMul(a, b, 2, 3, 4, 6)));
        cases.Add(MatMulCase([2, 2, 3, 4], [2, 2, 4, 5], (a, b) => MatMul(a, b, 4, 3, 4, 5)));
        cases.Add(new OpCase
        {
            Name = "matmul [4, 6] x transpose([5, 6])",
            Inputs = [new([4, 6]), new([5, 6])],
            Build = (v, _) => Ops.MatMul(v[0], Ops.Transpose(v[1], 0, 1)),
            Reference = (x, _) => MatMul(x[0], Transpose2D(x[1], 5, 6), 1, 4, 6, 5),
        });
        cases.Add(new OpCase
        {
            Name = "matmul transpose([6, 4]) x [6, 3]",
            Inputs = [new([6, 4]), new([6, 3])],
            Build = (v, _) => Ops.MatMul(Ops.Transpose(v[0], 0, 1), v[1]),
            Reference = (x, _) => MatMul(Transpose2D(x[0], 6, 4), x[1], 1, 4, 6, 3),
        });
        cases.Add(new OpCase
        {
            Name = "linear [2, 3, 7] x [5, 7]",
            Inputs = [new([2, 3, 7]), new([5, 7])],
            Build = (v, _) => Ops.Linear(v[0], v[1]),
            Reference = (x, _) => MatMul(x[0], Transpose2D(x[1], 5, 7), 1, 6, 7, 5),
        });

        // The fused LoRA linear layer: x Wᵀ + s · (dropout(x) Aᵀ) Bᵀ, with and without dropout on the adapter input.
        foreach (double dropout in new[] { 0.0, 0.25 })
        {
            cases.Add(new OpCase
            {
                Name = $"lora-linear [2, 3, 7] W [5, 7] r=3 dropout={dropout}",
                Inputs = [new([2, 3, 7]), new([5, 7]), new([3, 7]), new([5, 3])],
                Build = (v, _) => Ops.LoraLinear(v[0], v[1], v[2], v[3], scale: 1.5, dropout, seed: 77),
                Reference = (x, _) =>
                {
                    var dropped = x[0].Select((value, index) => dropout == 0 ? value : Philox.Uniform(77, (ulong)index) >= dropout ? value / (1 - dropout) : 0).ToArray();
                    var baseOutput = MatMul(x[0], Transpose2D(x[1], 5, 7), 1, 6, 7, 5);
                    var adapter = MatMul(MatMul(dropped, Transpose2D(x[2], 3, 7), 1, 6, 7, 3), Transpose2D(x[3], 5, 3), 1, 6, 3, 5);
                    return baseOutput.Zip(adapter, (b, a) => b + 1.5 * a).ToArray();
                },
            });
        }

        // Reductions.
        foreach (var (shape, axes, keep) in new (int[], int[]?, bool)[] { ([3, 4], null, false), ([3, 4, 5], [1], false), ([3, 4, 5], [0, 2], true), ([2, 7], [-1], true) })
        {
            var resolved = axes?.Select(a => a < 0 ? a + shape.Length : a).ToArray() ?? Enumerable.Range(0, shape.Length).ToArray();
            cases.Add(new OpCase
            {
                Name = $"sum {Format(shape)} axes {(axes is null ? "all" : Format(axes))} keep={keep}",
                Inputs = [new(shape)],
                Build = (v, _) => Ops.Sum(v[0], axes, keep),
                Reference = (x, _) => Sum(x[0], shape, resolved),
            });
        }
        cases.Add(new OpCase
        {
            Name = "mean [3, 4, 5] axes [2]",
            Inputs = [new([3, 4, 5])],
            Build = (v, _) => Ops.Mean(v[0], [2]),
            Reference = (x, _) => Sum(x[0], [3, 4, 5], [2]).Select(s => s / 5).ToArray(),
        });
        cases.Add(new OpCase
        {
            Name = "max [4, 9]",
            Inputs = [new([4, 9])],
            Build = (v, _) => Ops.Max(v[0]),
            Reference = (x, _) => Rows(x[0], 9, row => [row.Max()]),
        });

        // Views and copies.
        cases.Add(new OpCase
        {
            Name = "reshape [2, 3, 4] -> [4, -1]",
            Inputs = [new([2, 3, 4])],
            Build = (v, _) => Ops.Square(Ops.Reshape(v[0], 4, -1)),
            Reference = (x, _) => Map(x[0], a => a * a),
        });
        cases.Add(new OpCase
        {
            Name = "permute [2, 3, 4] (2, 0, 1)",
            Inputs = [new([2, 3, 4])],
            Build = (v, _) => Ops.Square(Ops.Permute(v[0], 2, 0, 1)),
            Reference = (x, _) => Map(Permute(x[0], [2, 3, 4], [2, 0, 1]), a => a * a),
        });
        cases.Add(new OpCase
        {
            Name = "narrow [3, 7] axis 1 [2, 6)",
            Inputs = [new([3, 7])],
            Build = (v, _) => Ops.Square(Ops.Narrow(v[0], 1, 2, 4)),
            Reference = (x, _) => Map(Narrow(x[0], [3, 7], 1, 2, 4), a => a * a),
        });
        cases.Add(new OpCase
        {
            Name = "concat [2, 3] [2, 5] axis 1",
            Inputs = [new([2, 3]), new([2, 5])],
            Build = (v, _) => Ops.Concat([v[0], v[1]], 1),
            Reference = (x, _) => [.. x[0][..3], .. x[1][..5], .. x[0][3..], .. x[1][5..]],
        });

        // Indexing: duplicate indices exercise the deterministic scatter-add in backward.
        cases.Add(new OpCase
        {
            Name = "embedding [6, 5] ids [2, 3] with duplicates",
            Inputs = [new([6, 5])],
            Indices = [new([4, 0, 4, 5, 2, 4], [2, 3])],
            Build = (v, i) => Ops.Embedding(v[0], i[0]),
            Reference = (x, i) => IndexSelect(x[0], 5, i[0]),
        });
        cases.Add(new OpCase
        {
            Name = "gather-flat [4, 5] with duplicates",
            Inputs = [new([4, 5])],
            Indices = [new([19, 0, 7, 7, 13, 2, 7], [7])],
            Build = (v, i) => Ops.GatherFlat(v[0], i[0]),
            Reference = (x, i) => i[0].Select(index => x[0][index]).ToArray(),
        });
        cases.Add(new OpCase
        {
            Name = "scatter-add-flat [4, 5] with duplicates",
            Inputs = [new([4, 5]), new([6])],
            Indices = [new([3, 17, 3, 0, 19, 3], [6])],
            Build = (v, i) => Ops.ScatterAddFlat(v[0], i[0], v[1]),
            Reference = (x, i) =>
            {
                var result = (double[])x[0].Clone();
                for (int k = 0; k < i[0].Length; k++)
                {
                    result[i[0][k]] += x[1][k];
                }
                return result;
            },
        });

        // SpIEL's sparse-delta linear layer: one delta, a few percent, every entry of W; leading batch axes; and sizes past
        // the 32-wide tiles of the transposes behind the values' gradient. Indices are unique, as SpIEL keeps them.
        foreach (var (inputShape, outFeatures, deltaCount) in new (int[], int, int)[] { ([2, 3, 7], 5, 6), ([4, 6], 3, 18), ([2, 2, 3, 9], 11, 1), ([37, 40], 33, 100) })
        {
            int inFeatures = inputShape[^1];
            var indices = UniqueIndices(new Random(outFeatures * inFeatures + deltaCount), deltaCount, outFeatures * inFeatures);
            cases.Add(new OpCase
            {
                Name = $"sparse-delta-linear {Format(inputShape)} W [{outFeatures}, {inFeatures}] k={deltaCount}",
                Inputs = [new(inputShape), new([outFeatures, inFeatures]), new([deltaCount])],
                Indices = [new(indices, [deltaCount])],
                Build = (v, i) => Ops.SparseDeltaLinear(v[0], v[1], i[0], v[2]),
                Reference = (x, i) => SparseDeltaLinear(x[0], x[1], i[0], x[2], outFeatures, inFeatures),
            });
        }

        // VB-LoRA's top-k admixture: k = 1, 2, 3 and k = N, N not a power of two, leading batch axes, and (with 40 rows
        // over 7 vectors) bank vectors picked by many rows, which the bank gradient's scatter-add must sum. Central
        // differences are valid only away from ties: a logit within a step (1e-6) of the k-th largest would enter or leave
        // the selection between the two evaluations. Independent random draws can land that close, so the logits come from
        // SeparatedRows (entries of a row at least 0.1 apart).
        foreach (var (logitsShape, vectorLength, topK) in new (int[], int, int)[] { ([6, 5], 8, 1), ([7, 13], 4, 2), ([2, 3, 9], 6, 3), ([4, 6], 5, 6), ([40, 7], 3, 2) })
        {
            int vectorCount = logitsShape[^1], rowCount = (int)(Count(logitsShape) / vectorCount);
            cases.Add(new OpCase
            {
                Name = $"top-k admixture logits {Format(logitsShape)} bank [{vectorCount}, {vectorLength}] k={topK}",
                Inputs = [new(logitsShape, Values: random => TestData.SeparatedRows(random, rowCount, vectorCount)), new([vectorCount, vectorLength])],
                Build = (v, _) => Ops.TopKAdmixture(v[0], v[1], topK),
                Reference = (x, _) => TopKAdmixture(x[0], x[1], vectorCount, vectorLength, topK),
            });
        }

        // Softmax family.
        foreach (var shape in new[] { new[] { 3, 17 }, new[] { 2, 3, 1 }, new[] { 1, 64 } })
        {
            int width = shape[^1];
            cases.Add(new OpCase { Name = $"softmax {Format(shape)}", Inputs = [new(shape)], Build = (v, _) => Ops.Softmax(v[0]), Reference = (x, _) => Rows(x[0], width, Softmax) });
            cases.Add(new OpCase { Name = $"log-softmax {Format(shape)}", Inputs = [new(shape)], Build = (v, _) => Ops.LogSoftmax(v[0]), Reference = (x, _) => Rows(x[0], width, LogSoftmax) });
        }
        cases.Add(new OpCase
        {
            Name = "cross-entropy [6, 11] with ignored rows",
            Inputs = [new([6, 11])],
            Indices = [new([3, Ops.IgnoreIndex, 0, 10, 5, Ops.IgnoreIndex], [6])],
            Build = (v, i) => Ops.CrossEntropy(v[0], i[0]),
            Reference = (x, i) => [CrossEntropy(x[0], 11, i[0], Ops.IgnoreIndex)],
        });
        cases.Add(new OpCase
        {
            Name = "cross-entropy [2, 3, 7] targets [2, 3]",
            Inputs = [new([2, 3, 7])],
            Indices = [new([6, 0, 1, 1, Ops.IgnoreIndex, 3], [2, 3])],
            Build = (v, i) => Ops.CrossEntropy(v[0], i[0]),
            Reference = (x, i) => [CrossEntropy(x[0], 7, i[0], Ops.IgnoreIndex)],
        });

        // Transformer blocks.
        foreach (var shape in new[] { new[] { 3, 16 }, new[] { 2, 3, 7 } })
        {
            int width = shape[^1];
            cases.Add(new OpCase
            {
                Name = $"rms-norm {Format(shape)}",
                Inputs = [new(shape), new([width])],
                Build = (v, _) => Ops.RmsNorm(v[0], v[1], 1e-5),
                Reference = (x, _) => RmsNorm(x[0], x[1], 1e-5),
            });
        }
        foreach (var (shape, positions) in new (int[], int[])[] { ([2, 3, 5, 8], [0, 1, 2, 3, 4]), ([1, 2, 3, 6], [7, 100, 2047]) })
        {
            cases.Add(new OpCase
            {
                Name = $"rope {Format(shape)} positions {Format(positions)}",
                Inputs = [new(shape)],
                Indices = [new(positions, [positions.Length])],
                Build = (v, i) => Ops.Rope(v[0], i[0], 10000),
                Reference = (x, i) => Rope(x[0], shape, i[0], 10000),
            });
        }
        foreach (var (batch, qHeads, kvHeads, queryLen, keyLen, headDim) in new[] { (2, 4, 2, 5, 5, 8), (1, 2, 1, 3, 7, 6), (1, 3, 3, 9, 9, 5), (2, 4, 1, 1, 4, 4) })
        {
            cases.Add(new OpCase
            {
                Name = $"attention b{batch} h{qHeads}/{kvHeads} q{queryLen} k{keyLen} d{headDim}",
                Inputs = [new([batch, qHeads, queryLen, headDim]), new([batch, kvHeads, keyLen, headDim]), new([batch, kvHeads, keyLen, headDim])],
                Build = (v, _) => Ops.CausalAttention(v[0], v[1], v[2]),
                Reference = (x, _) => AttentionReference.Forward(x[0], x[1], x[2], batch, qHeads, kvHeads, queryLen, keyLen, headDim, 1 / Math.Sqrt(headDim)).O,
            });
        }
        cases.Add(new OpCase
        {
            Name = "dropout p=0.3 [5, 40]",
            Inputs = [new([5, 40])],
            Build = (v, _) => Ops.Dropout(v[0], 0.3, 1234),
            // The mask is defined by the Philox stream: element i is kept when uniform(seed, i) >= p.
            Reference = (x, _) => x[0].Select((a, index) => Philox.Uniform(1234, (ulong)index) >= 0.3 ? a / 0.7 : 0).ToArray(),
        });
        return cases;
    }

    private static OpCase MatMulCase(int[] left, int[] right, Func<double[], double[], double[]> reference) => new()
    {
        Name = $"matmul {Format(left)} x {Format(right)}",
        Inputs = [new(left), new(right)],
        Build = (v, _) => Ops.MatMul(v[0], v[1]),
        Reference = (x, _) => reference(x[0], x[1]),
    };

    /// <summary>k distinct indices in [0, limit), in random order.</summary>
    public static int[] UniqueIndices(Random random, int count, int limit) => Enumerable.Range(0, limit).OrderBy(_ => random.Next()).Take(count).ToArray();

    private static string Format(int[] shape) => "[" + string.Join(", ", shape) + "]";
}
