using Engine.Autograd;
using Engine.Tests.Support;
using Xunit.Sdk;

namespace Engine.Tests.Conformance;

/// <summary>The conformance checks themselves must be able to fail: a wrong backward rule and a wrong forward result are caught.</summary>
public class HarnessTests
{
    /// <summary>SiLU forward with the derivative of the sigmoid instead of SiLU's: a plausible-looking, wrong backward rule.</summary>
    private sealed class WrongSiluFunction : Function
    {
        private Tensor? input;

        public override string Name => "WrongSilu";

        public static Variable Apply(Variable x)
        {
            var result = Tensor.Empty(x.Shape, x.DType, x.Device);
            result.Backend.Unary(UnaryOp.Silu, x.Data, result);
            var function = new WrongSiluFunction();
            function.input = function.Save(x.Data);
            return function.Finish(result, x);
        }

        protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
        {
            var sigmoid = Tensor.Empty(input!.Shape, input.DType, input.Device);
            sigmoid.Backend.Unary(UnaryOp.Sigmoid, input, sigmoid);
            var inputGrad = Tensor.Empty(input.Shape, input.DType, input.Device);
            inputGrad.Backend.UnaryBackward(UnaryOp.Sigmoid, input, sigmoid, outputGrad, inputGrad);
            return [inputGrad];
        }
    }

    [Fact]
    public void GradientCheckCatchesAWrongBackwardRule()
    {
        var wrong = new OpCase
        {
            Name = "wrong silu [9]",
            Inputs = [new([9])],
            Build = (v, _) => WrongSiluFunction.Apply(v[0]),
            Reference = (x, _) => ReferenceValues(x[0]),
        };
        Assert.Throws<TrueException>(() => new CaseRunner(wrong).CheckGradients(ConformanceTests.GradientTolerance));
    }

    [Fact]
    public void ForwardComparisonCatchesAnOffByOneIndex()
    {
        // A softmax whose reference reads one element to the right: the kind of indexing slip the suite exists to catch.
        var runner = new CaseRunner(new OpCase
        {
            Name = "shifted softmax [2, 8]",
            Inputs = [new([2, 8])],
            Build = (v, _) => Ops.Softmax(v[0]),
            Reference = (x, _) => Reference.ReferenceOps.Rows(x[0], 8, row => Reference.ReferenceOps.Softmax([.. row[1..], row[0]])),
        });
        var (output, _) = runner.Run(DType.Float32, Device.Cpu, backward: false);
        Assert.Throws<TrueException>(() => Assertions.Close(runner.ReferenceOutput, output, ConformanceTests.Float32Tolerance, "shifted softmax"));
    }

    private static double[] ReferenceValues(double[] x) => x.Select(v => v / (1 + Math.Exp(-v))).ToArray();
}
