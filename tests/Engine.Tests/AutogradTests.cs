using Engine.Autograd;

namespace Engine.Tests;

public class AutogradTests
{
    private static Parameter MakeParameter(string name, int[] shape, ulong seed, bool trainable = true) =>
        new(Tensor.Uniform(shape, -1, 1, seed), name, trainable);

    /// <summary>A stack of linear + SiLU layers; returns the mean of the output.</summary>
    private static Variable Stack(Variable input, IReadOnlyList<Parameter> layers)
    {
        var hidden = input;
        foreach (var weight in layers)
        {
            hidden = Ops.Silu(Ops.Linear(hidden, weight));
        }
        return Ops.Mean(hidden);
    }

    [Fact]
    public void FrozenParametersGetNoGradientBufferAndBackwardStopsAtTheLowestTrainableLayer()
    {
        using var scope = new TensorScope();
        var layers = Enumerable.Range(0, 4).Select(i => MakeParameter($"layer{i}", [8, 8], (ulong)i, trainable: i >= 2)).ToList();
        var input = new Variable(Tensor.Uniform([3, 8], -1, 1, 99));
        using var tape = new Tape();
        var loss = Stack(input, layers);
        // Layers 0 and 1 depend on no trainable parameter: their Linear and SiLU are never recorded.
        Assert.Equal(["Linear", "Silu", "Linear", "Silu", "Sum", "Affine"], tape.RecordedOperations);
        tape.Backward(loss);
        Assert.Equal(6, tape.BackwardExecutedCount);
        Assert.Null(layers[0].Grad);
        Assert.Null(layers[1].Grad);
        Assert.NotNull(layers[2].Grad);
        Assert.NotNull(layers[3].Grad);
    }

    [Fact]
    public void TrainableSetMayChangeEveryStepAndFreezingFreesTheBuffer()
    {
        using var scope = new TensorScope();
        var layers = Enumerable.Range(0, 3).Select(i => MakeParameter($"layer{i}", [4, 4], (ulong)(10 + i))).ToList();
        var input = new Variable(Tensor.Uniform([2, 4], -1, 1, 5));
        for (int step = 0; step < 3; step++)
        {
            for (int i = 0; i < layers.Count; i++)
            {
                layers[i].Trainable = i == step;
            }
            Assert.All(layers.Where((_, i) => i != step), p => Assert.Null(p.Grad));
            using var tape = new Tape();
            tape.Backward(Stack(input, layers));
            Assert.NotNull(layers[step].Grad);
            Assert.All(layers.Where((_, i) => i != step), p => Assert.Null(p.Grad));
        }
    }

    [Fact]
    public void GradientsAccumulateAcrossBackwardPasses()
    {
        using var scope = new TensorScope();
        var weight = MakeParameter("w", [3, 3], 1);
        var input = new Variable(Tensor.Uniform([2, 3], -1, 1, 2));
        float[] once;
        using (var tape = new Tape())
        {
            tape.Backward(Stack(input, [weight]));
            once = weight.Grad!.ToArray<float>();
        }
        using (var tape = new Tape())
        {
            tape.Backward(Stack(input, [weight]));
        }
        var twice = weight.Grad!.ToArray<float>();
        for (int i = 0; i < once.Length; i++)
        {
            Assert.Equal(2 * once[i], twice[i], 6);
        }
    }

    [Fact]
    public void SharedParameterReceivesTheSumOfItsUses()
    {
        // VB-LoRA shares one bank across every layer: gradients from each use must add up.
        using var scope = new TensorScope();
        var shared = MakeParameter("bank", [4], 3);
        var x = new Variable(Tensor.Uniform([4], -1, 1, 4));
        using var tape = new Tape();
        var loss = Ops.Sum(Ops.Add(Ops.Mul(shared, x), Ops.Mul(shared, shared)));
        tape.Backward(loss);
        var expected = shared.Data.ToArray<float>().Zip(x.Data.ToArray<float>(), (s, v) => v + 2 * s).ToArray();
        var actual = shared.Grad!.ToArray<float>();
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(expected[i], actual[i], 5);
        }
    }

    [Fact]
    public void NoGradRecordsNothing()
    {
        using var scope = new TensorScope();
        var weight = MakeParameter("w", [3, 3], 1);
        using var tape = new Tape();
        using (GradMode.NoGrad())
        {
            var output = Stack(new Variable(Tensor.Uniform([2, 3], -1, 1, 2)), [weight]);
            Assert.False(output.RequiresGrad);
        }
        Assert.Equal(0, tape.RecordedCount);
    }

    [Fact]
    public void BackwardFreesIntermediateMemory()
    {
        // A private device ordinal: tests run in parallel, and the shared CPU device's byte count moves with them.
        var backend = new Engine.Cpu.CpuBackend(ordinal: 8);
        Backends.Register(backend);
        var weight = new Parameter(Tensor.Uniform([64, 64], -1, 1, 1, DType.Float32, backend.Device), "w");
        var input = new Variable(Tensor.Uniform([32, 64], -1, 1, 2, DType.Float32, backend.Device));
        long before = backend.MemoryInUse.Current;
        using (var scope = new TensorScope())
        using (var tape = new Tape())
        {
            tape.Backward(Stack(input, [weight, weight, weight]));
        }
        // Only the parameter's gradient (64·64 floats) outlives the step.
        Assert.Equal(before + 64 * 64 * 4, backend.MemoryInUse.Current);
        weight.Dispose();
        input.Dispose();
    }
}
