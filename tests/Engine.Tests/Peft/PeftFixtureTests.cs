using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Model;
using Engine.Peft;
using Engine.Peft.Lora;
using Engine.Peft.VbLora;
using Engine.Tests.Support;

namespace Engine.Tests.Peft;

/// <summary>
/// The adapters in tests/fixtures/adapters were written in peft's file format by tests/fixtures/make_adapter_fixtures.py
/// (PyTorch, following peft's LoRA and VB-LoRA layers) for the llama-tiny fixture model, with the loss, logits and
/// gradients computed in float64. The engine (float32) must load them, reproduce those numbers, and write the same files.
/// </summary>
public class PeftFixtureTests
{
    private static string AdapterFixture(string name) => Path.Combine(RepositoryPaths.Fixture("adapters"), name);

    private static double[] ToDoubles(Tensor tensor) => tensor.DType == DType.Int32 ? tensor.ToArray<int>().Select(value => (double)value).ToArray() : tensor.To(DType.Float64).ToArray<double>();

    /// <summary>The key a parameter's tensor has in the adapter file (the bank is "base_model.vblora_vector_bank").</summary>
    private static string FileKey(Parameter parameter) =>
        parameter.Name == "vblora_vector_bank" ? "base_model.vblora_vector_bank" : "base_model.model." + parameter.Name;

    /// <summary>
    /// Loss to 1e-5 relative (the bar) and logits to 2e-5 of their scale, as for the base-model fixture: float32
    /// through two layers accumulates ~10-100 ulp, while a layout slip (B's transpose, a sub-vector in the wrong columns,
    /// a wrong scale) moves the loss by 1e-2 or more.
    /// </summary>
    [Theory]
    [InlineData("lora")]
    [InlineData("lora-rslora-all")]
    [InlineData("vblora")]
    [InlineData("vblora-topk")]
    public void LoadsThePeftAdapterAndMatchesTheReferenceLoss(string name)
    {
        string directory = AdapterFixture(name);
        using var scope = new TensorScope();
        using var model = LlamaModel.Load(RepositoryPaths.Fixture("llama-tiny"));
        using var adapter = AdapterFiles.Load(directory, model);
        using var expected = SafetensorsFile.Open(Path.Combine(directory, "expected.safetensors"));
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "expected.json"))).RootElement;
        double expectedLoss = reference.GetProperty("loss").GetDouble();

        using var tape = new Tape();
        var logits = model.Forward(expected.Load("input_ids"));
        var loss = Ops.CrossEntropy(logits, expected.Load("targets"));
        Assert.Equal(expectedLoss, loss.Data.Item(), expectedLoss * 1e-5);
        Assert.NotEqual(reference.GetProperty("base_loss_float64").GetDouble(), loss.Data.Item(), 1e-3);
        Assertions.Close(ToDoubles(expected.Load("logits")), ToDoubles(logits.Data), 2e-5, "logits");

        if (!expected.Names.Any(key => key.StartsWith("grad.", StringComparison.Ordinal)))
        {
            return; // the script stores gradients for the lora and vblora adapters only
        }
        tape.Backward(loss);
        Assert.All(model.Parameters, parameter => Assert.Null(parameter.Grad));
        foreach (var parameter in adapter.Parameters)
        {
            string key = "grad." + FileKey(parameter);
            Assert.True(expected.Contains(key), $"the fixture has no {key}");
            Assertions.Close(ToDoubles(expected.Load(key)), ToDoubles(parameter.Grad!), 2e-5, $"gradient of {parameter.Name}");
        }
    }

    [Fact]
    public void VbLoraComposesAAndBInPeftsLayout()
    {
        string directory = AdapterFixture("vblora");
        using var scope = new TensorScope();
        using var noGrad = GradMode.NoGrad();
        using var model = LlamaModel.Load(RepositoryPaths.Fixture("llama-tiny"));
        using var adapter = (VbLoraAdapter)AdapterFiles.Load(directory, model);
        using var expected = SafetensorsFile.Open(Path.Combine(directory, "expected.safetensors"));
        Assert.Equal(14, adapter.VbLoraModules.Count);
        foreach (var module in adapter.VbLoraModules)
        {
            var (a, b) = module.Compose();
            Assertions.Close(ToDoubles(expected.Load($"composed_A.{module.Name}")), ToDoubles(a.Data), 1e-6, $"A of {module.Name}");
            Assertions.Close(ToDoubles(expected.Load($"composed_B.{module.Name}")), ToDoubles(b.Data), 1e-6, $"B of {module.Name}");
        }
    }

    [Fact]
    public void LoraMergeMatchesReferenceAndUnmergeRestoresTheBase()
    {
        string directory = AdapterFixture("lora");
        using var scope = new TensorScope();
        using var model = LlamaModel.Load(RepositoryPaths.Fixture("llama-tiny"));
        var original = model.Parameters.ToDictionary(p => p.Name, p => ToDoubles(p.Data));
        using var adapter = AdapterFiles.Load(directory, model);
        using var expected = SafetensorsFile.Open(Path.Combine(directory, "expected.safetensors"));
        using var noGrad = GradMode.NoGrad();
        var inputIds = expected.Load("input_ids");
        var unmerged = ToDoubles(model.Forward(inputIds).Data);

        adapter.Merge();
        Assert.Equal(6, adapter.Modules.Count);
        foreach (var module in adapter.Modules)
        {
            Assertions.Close(ToDoubles(expected.Load($"merged.{module.Name}.weight")), ToDoubles(module.Weight.Data), 1e-6, $"merged {module.Name}");
        }
        Assertions.Close(unmerged, ToDoubles(model.Forward(inputIds).Data), 1e-5, "logits of the merged model");

        adapter.Unmerge();
        foreach (var parameter in model.Parameters)
        {
            Assertions.Close(original[parameter.Name], ToDoubles(parameter.Data), 1e-6, $"{parameter.Name} after unmerge");
        }
        Assertions.Close(unmerged, ToDoubles(model.Forward(inputIds).Data), 1e-6, "logits after unmerge");
    }

    /// <summary>
    /// Loading a peft file and saving it again gives the same tensors (keys, shapes, dtypes, values) and config fields; the
    /// full VB-LoRA adapter saved top-k only gives the fixture's top-k file (U8 indices, k−1 weights).
    /// </summary>
    [Theory]
    [InlineData("lora", "lora", false)]
    [InlineData("lora-rslora-all", "lora-rslora-all", false)]
    [InlineData("vblora", "vblora", false)]
    [InlineData("vblora-topk", "vblora-topk", false)]
    [InlineData("vblora", "vblora-topk", true)]
    public void SavesTheFilesPeftWrites(string source, string reference, bool saveTopKOnly)
    {
        using var output = new TemporaryDirectory();
        using (var scope = new TensorScope())
        using (var model = LlamaModel.Load(RepositoryPaths.Fixture("llama-tiny")))
        using (var adapter = AdapterFiles.Load(AdapterFixture(source), model))
        {
            if (saveTopKOnly)
            {
                ((VbLoraAdapter)adapter).SaveOnlyTopKWeights = true;
            }
            adapter.Save(output.Path);
        }
        string referenceDirectory = AdapterFixture(reference);
        var expectedConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(referenceDirectory, AdapterFiles.ConfigFileName)))!.AsObject();
        var writtenConfig = JsonNode.Parse(File.ReadAllText(Path.Combine(output.Path, AdapterFiles.ConfigFileName)))!.AsObject();
        Assert.Equal(expectedConfig.Select(pair => pair.Key).Order(), writtenConfig.Select(pair => pair.Key).Order());
        foreach (var (field, value) in expectedConfig)
        {
            Assert.True(JsonNode.DeepEquals(value, writtenConfig[field]) || JsonEquivalentNumber(value, writtenConfig[field]),
                $"config field {field}: expected {value?.ToJsonString()}, wrote {writtenConfig[field]?.ToJsonString()}");
        }

        using var expected = SafetensorsFile.Open(Path.Combine(referenceDirectory, AdapterFiles.WeightsFileName));
        using var written = SafetensorsFile.Open(Path.Combine(output.Path, AdapterFiles.WeightsFileName));
        Assert.Equal(expected.Names.Order(), written.Names.Order());
        Assert.Equal("pt", written.Metadata["format"]);
        foreach (var name in expected.Names)
        {
            Assert.Equal(expected.Entry(name).DTypeName, written.Entry(name).DTypeName);
            Assert.Equal(expected.Entry(name).Shape, written.Entry(name).Shape);
            // Top-k weights are recomputed from float32 logits here and in float64 by the script: 1e-6 covers the rounding.
            Assertions.Close(ToDoubles(expected.Load(name)), ToDoubles(written.Load(name)), saveTopKOnly ? 1e-6 : 0, name);
        }
    }

    /// <summary>peft writes lora_alpha 8 where this engine may write 8.0 (a double); both read back as the same number.</summary>
    private static bool JsonEquivalentNumber(JsonNode? expected, JsonNode? written) =>
        expected is JsonValue left && written is JsonValue right && left.TryGetValue<double>(out var a) && right.TryGetValue<double>(out var b) && a == b;

    [Fact]
    public void ATopKOnlyAdapterRunsButRefusesToTrain()
    {
        using var scope = new TensorScope();
        using var model = LlamaModel.Load(RepositoryPaths.Fixture("llama-tiny"));
        using var adapter = (VbLoraAdapter)AdapterFiles.Load(AdapterFixture("vblora-topk"), model);
        Assert.True(adapter.IsTopKOnly);
        var error = Assert.Throws<InvalidOperationException>(adapter.EnsureTrainable);
        Assert.Contains("save_only_topk_weights", error.Message);
        Assert.Throws<InvalidOperationException>(() => adapter.SaveOnlyTopKWeights = false);
    }
}
