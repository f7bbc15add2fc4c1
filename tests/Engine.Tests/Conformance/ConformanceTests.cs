using Engine.Tests.Support;

namespace Engine.Tests.Conformance;

/// <summary>
/// Every operation, on every backend present, against the float64 reference, plus a float64 central-difference check of
/// every backward rule. (Backends beyond the CPU join by adding their device to <see cref="Devices"/>.)
/// </summary>
public class ConformanceTests
{
    /// <summary>
    /// float32 tolerance: unit roundoff is 6e-8; the cases here sum at most a few dozen terms per output and pass through
    /// exp/log/tanh (a few ulp each), so errors stay below ~1e-6 of the output's scale. 1e-5 leaves a margin of ~10x
    /// without letting a wrong index or a missed term (errors of order 1e-1) through.
    /// </summary>
    public const double Float32Tolerance = 1e-5;

    /// <summary>float64 kernels against the float64 reference: only summation order differs, so ~1e-15 is expected.</summary>
    private const double Float64Tolerance = 1e-11;

    /// <summary>
    /// Central differences with step h = 1e-6 in float64: truncation error ~h²·f''' ≈ 1e-12 and rounding error
    /// ~ε·|f|/h ≈ 1e-10·|f|, so analytic and numeric gradients agree to ~1e-8 of the gradient scale; 1e-6 is the bound.
    /// </summary>
    public const double GradientTolerance = 1e-6;

    public static IEnumerable<object[]> Cases => OpCases.Names;

    public static IEnumerable<Device> Devices => [Device.Cpu];

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32ForwardMatchesFloat64Reference(string name)
    {
        var runner = new CaseRunner(OpCases.Get(name));
        foreach (var device in Devices)
        {
            var (output, _) = runner.Run(DType.Float32, device, backward: false);
            Assertions.Close(runner.ReferenceOutput, output, Float32Tolerance, $"{name} float32 forward on {device} ({runner.Seed})");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float64ForwardMatchesFloat64Reference(string name)
    {
        var runner = new CaseRunner(OpCases.Get(name));
        var (output, _) = runner.Run(DType.Float64, Device.Cpu, backward: false);
        Assertions.Close(runner.ReferenceOutput, output, Float64Tolerance, $"{name} float64 forward ({runner.Seed})");
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float64GradientsMatchCentralDifferences(string name) =>
        new CaseRunner(OpCases.Get(name)).CheckGradients(GradientTolerance);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32GradientsMatchFloat64Gradients(string name)
    {
        var runner = new CaseRunner(OpCases.Get(name));
        var (_, expected) = runner.Run(DType.Float64, Device.Cpu);
        foreach (var device in Devices)
        {
            var (_, actual) = runner.Run(DType.Float32, device);
            for (int input = 0; input < expected.Length; input++)
            {
                if (expected[input] is null)
                {
                    Assert.Null(actual[input]);
                    continue;
                }
                Assertions.Close(expected[input]!, actual[input]!, Float32Tolerance, $"{name} float32 gradient of input {input} on {device} ({runner.Seed})");
            }
        }
    }
}
