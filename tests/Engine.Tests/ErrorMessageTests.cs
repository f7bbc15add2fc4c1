using Engine.Autograd;
using Engine.Cpu;

namespace Engine.Tests;

/// <summary>Invalid operands raise exceptions whose messages name both operands' shapes, dtypes or devices.</summary>
public class ErrorMessageTests
{
    [Fact]
    public void ShapeMismatchNamesBothShapes()
    {
        using var scope = new TensorScope();
        var left = new Variable(Tensor.Zeros([2, 3]));
        var right = new Variable(Tensor.Zeros([4, 5]));
        var error = Assert.Throws<ArgumentException>(() => Ops.Add(left, right));
        Assert.Contains("[2, 3]", error.Message);
        Assert.Contains("[4, 5]", error.Message);
        var matmulError = Assert.Throws<ArgumentException>(() => Ops.MatMul(left, right));
        Assert.Contains("float32[2, 3]", matmulError.Message);
        Assert.Contains("float32[4, 5]", matmulError.Message);
    }

    [Fact]
    public void DTypeMismatchNamesBothDTypes()
    {
        using var scope = new TensorScope();
        var single = new Variable(Tensor.Zeros([3]));
        var @double = new Variable(Tensor.Zeros([3], DType.Float64));
        var error = Assert.Throws<ArgumentException>(() => Ops.Mul(single, @double));
        Assert.Contains("float32[3]", error.Message);
        Assert.Contains("float64[3]", error.Message);
    }

    [Fact]
    public void DeviceMismatchNamesBothDevices()
    {
        using var scope = new TensorScope();
        Backends.Register(new CpuBackend(ordinal: 1));
        var here = new Variable(Tensor.Zeros([3]));
        var there = new Variable(Tensor.Zeros([3], DType.Float32, new Device(DeviceKind.Cpu, 1)));
        var error = Assert.Throws<ArgumentException>(() => Ops.Sub(here, there));
        Assert.Contains("on cpu", error.Message);
        Assert.Contains("on cpu:1", error.Message);
    }

    [Fact]
    public void UnsupportedDTypeForComputeIsNamed()
    {
        using var scope = new TensorScope();
        var bf16 = new Variable(Tensor.Zeros([3], DType.BFloat16));
        var error = Assert.Throws<ArgumentException>(() => Ops.Exp(bf16));
        Assert.Contains("bfloat16[3]", error.Message);
    }

    [Fact]
    public void ViewAndIndexErrorsNameTheTensor()
    {
        using var scope = new TensorScope();
        var tensor = Tensor.Zeros([2, 3]);
        Assert.Contains("[2, 3]", Assert.Throws<ArgumentException>(() => tensor.Reshape(4, 2)).Message);
        Assert.Contains("[2, 3]", Assert.Throws<ArgumentException>(() => tensor.Expand(4, 4)).Message);
        Assert.Contains("size 3", Assert.Throws<ArgumentOutOfRangeException>(() => tensor.Narrow(1, 2, 2)).Message);
        var table = new Variable(Tensor.Zeros([4, 2]));
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.Embedding(table, Tensor.FromArray([1, 9], 2)));
        Assert.Contains("index 9", error.Message);
        Assert.Contains("[0, 4)", error.Message);
        var logits = new Variable(Tensor.Zeros([2, 5]));
        var targetError = Assert.Throws<ArgumentOutOfRangeException>(() => Ops.CrossEntropy(logits, Tensor.FromArray([1, 5], 2)));
        Assert.Contains("target 5", targetError.Message);
    }
}
