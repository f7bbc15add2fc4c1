using Engine.Autograd;
using Engine.Tests.Support;

namespace Engine.Tests.Conformance;

/// <summary>Runs an <see cref="OpCase"/> on a device in a dtype: fresh inputs, forward, and backward with a given output gradient.</summary>
public sealed class CaseRunner
{
    public CaseRunner(OpCase opCase)
    {
        Case = opCase;
        var random = new Random(TestData.SeedFor(opCase.Name));
        // Inputs are rounded to float32 once so the float32 run and the float64 reference see identical values.
        Inputs = opCase.Inputs.Select(spec => TestData.RoundToFloat(spec.Values?.Invoke(random) ?? TestData.Random(random, ReferenceCount(spec.Shape), spec.Domain))).ToArray();
        ReferenceOutput = opCase.Reference(Inputs, opCase.Indices.Select(index => index.Values).ToArray());
        OutputGrad = TestData.RoundToFloat(TestData.Random(random, ReferenceOutput.Length, Domain.Signed));
    }

    public OpCase Case { get; }

    public double[][] Inputs { get; }

    public double[] ReferenceOutput { get; }

    /// <summary>The gradient fed into backward: a fixed random vector r, so backward computes ∂(Σ output · r)/∂input.</summary>
    public double[] OutputGrad { get; }

    public string Seed => $"ENGINE_TEST_SEED={Environment.GetEnvironmentVariable("ENGINE_TEST_SEED") ?? "0"}";

    private static long ReferenceCount(int[] shape) => shape.Aggregate(1L, (product, size) => product * size);

    public (double[] Output, double[]?[] Grads) Run(DType dtype, Device device, double[][]? inputs = null, bool backward = true)
    {
        inputs ??= Inputs;
        using var scope = new TensorScope();
        using var tape = new Tape();
        var variables = Case.Inputs.Select((spec, i) => new Variable(Make(inputs[i], spec.Shape, dtype, device), requiresGrad: backward && spec.Differentiable)).ToArray();
        var indices = Case.Indices.Select(index => Tensor.FromArray<int>(index.Values, index.Shape, device)).ToArray();
        var output = Case.Build(variables, indices);
        var outputValues = Read(output.Data);
        if (!backward)
        {
            return (outputValues, []);
        }
        using var gradient = Make(OutputGrad, output.Data.ShapeArray(), dtype, device);
        tape.Backward(output, gradient);
        var grads = variables.Select(v => v.Grad is null ? null : Read(v.Grad)).ToArray();
        foreach (var variable in variables)
        {
            variable.ClearGrad();
        }
        return (outputValues, grads);
    }

    /// <summary>Σ output · r under no-grad: the scalar whose gradient backward computes.</summary>
    public double Objective(double[][] inputs)
    {
        using var noGrad = GradMode.NoGrad();
        var (output, _) = Run(DType.Float64, Device.Cpu, inputs, backward: false);
        double total = 0;
        for (int i = 0; i < output.Length; i++)
        {
            total += output[i] * OutputGrad[i];
        }
        return total;
    }

    /// <summary>
    /// Compares float64 backward against central differences of <see cref="Objective"/> (step 1e-6) at up to
    /// <paramref name="maxElements"/> evenly spread elements of each differentiable input; throws on a mismatch.
    /// </summary>
    public void CheckGradients(double tolerance, int maxElements = 48)
    {
        const double step = 1e-6;
        var (_, analytic) = Run(DType.Float64, Device.Cpu);
        for (int input = 0; input < Inputs.Length; input++)
        {
            if (!Case.Inputs[input].Differentiable)
            {
                Assert.Null(analytic[input]);
                continue;
            }
            Assert.NotNull(analytic[input]);
            int count = Inputs[input].Length, checkedCount = Math.Min(count, maxElements);
            var positions = Enumerable.Range(0, checkedCount).Select(i => (int)((long)i * count / checkedCount)).ToArray();
            var numeric = new double[positions.Length];
            for (int k = 0; k < positions.Length; k++)
            {
                var perturbed = Inputs.Select(values => (double[])values.Clone()).ToArray();
                perturbed[input][positions[k]] += step;
                double plus = Objective(perturbed);
                perturbed[input][positions[k]] -= 2 * step;
                double minus = Objective(perturbed);
                numeric[k] = (plus - minus) / (2 * step);
            }
            Assertions.Close(numeric, positions.Select(p => analytic[input]![p]).ToArray(), tolerance, $"{Case.Name} gradient of input {input} ({Seed})");
        }
    }

    private static Tensor Make(double[] values, int[] shape, DType dtype, Device device)
    {
        using var host = Tensor.FromArray<double>(values, shape);
        using var converted = host.To(dtype);
        return converted.To(device);
    }

    private static double[] Read(Tensor tensor)
    {
        using var onHost = tensor.To(Device.Cpu);
        using var asDouble = onHost.To(DType.Float64);
        return asDouble.ToArray<double>();
    }
}
