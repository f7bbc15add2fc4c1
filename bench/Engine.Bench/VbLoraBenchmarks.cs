using BenchmarkDotNet.Attributes;
using Engine.Autograd;
using Engine.Model;

namespace Engine.Bench;

/// <summary>
/// VB-LoRA's top-k admixture, forward + backward, for every sub-vector of one training step: all seven linear modules of
/// every layer are targeted, and a module (out, in) at rank r mixes r·in/L sub-vectors for A and out/L·r for B, each from
/// k of the N bank vectors. <see cref="PerModule"/> calls the op twice per module (A and B, with their own logits, as an
/// adapter does); <see cref="AllSubVectorsInOneCall"/> runs the same S rows in one call, so the difference is per-call overhead.
/// Throughput counts the mixing arithmetic: 2·S·k·L FLOP each for the forward mix, the backward dot products and the
/// bank gradient's scatter-add.
/// </summary>
[Config(typeof(ThroughputConfig))]
public class VbLoraBenchmarks : IWorkload
{
    private sealed record Setting(LlamaConfig Model, int Rank, int VectorCount, int VectorLength, int TopK)
    {
        /// <summary>Logits shapes in peft's layout: A (r, in/L, N) and B (out/L, r, N) for q, k, v, o, gate, up and down of each layer.</summary>
        public IEnumerable<int[]> LogitsShapes()
        {
            int hidden = Model.HiddenSize, keyValueWidth = Model.KeyValueHeads * Model.HeadDim, intermediate = Model.IntermediateSize;
            (int Out, int In)[] modules =
            [
                (hidden, hidden), (keyValueWidth, hidden), (keyValueWidth, hidden), (hidden, hidden),
                (intermediate, hidden), (intermediate, hidden), (hidden, intermediate),
            ];
            for (int layer = 0; layer < Model.NumHiddenLayers; layer++)
            {
                foreach (var (outFeatures, inFeatures) in modules)
                {
                    yield return [Rank, inFeatures / VectorLength, VectorCount];
                    yield return [outFeatures / VectorLength, Rank, VectorCount];
                }
            }
        }

        /// <summary>S: the number of sub-vectors (rows of all logits tensors together).</summary>
        public long SubVectorCount => LogitsShapes().Sum(shape => (long)shape[0] * shape[1]);
    }

    /// <summary>The vocabulary does not enter the sub-vector count; it is set only because LlamaConfig requires it.</summary>
    private static readonly Dictionary<string, Setting> Settings = new()
    {
        // A Llama with hidden 1024 and full multi-head attention, at peft's defaults (r 4, N 256, L 256, k 2): S = 2,464.
        ["llama-1024"] = new(new LlamaConfig { VocabSize = 32000, HiddenSize = 1024, IntermediateSize = 2816, NumHiddenLayers = 8, NumAttentionHeads = 16 }, 4, 256, 256, 2),
        // The demo's model (key/value width 64): L = 32 divides 64, 128 and 352. S = 1,168.
        ["demo-128"] = new(new LlamaConfig { VocabSize = 1, HiddenSize = 128, IntermediateSize = 352, NumHiddenLayers = 4, NumAttentionHeads = 4, NumKeyValueHeads = 2 }, 4, 64, 32, 2),
    };

    private Parameter bank = null!, allLogits = null!;
    private Parameter[] moduleLogits = [];
    private Tensor[] moduleOutputGrads = [];
    private Tensor allOutputGrad = null!;

    [Params("llama-1024", "demo-128")]
    public string Configuration { get; set; } = "";

    [GlobalSetup]
    public void GlobalSetup()
    {
        var setting = Settings[Configuration];
        using var untracked = TensorScope.Untracked();
        // peft's initialisation: bank U(±0.02), logits N(0, 0.1).
        bank = new Parameter(Tensor.Uniform([setting.VectorCount, setting.VectorLength], -0.02, 0.02, seed: 1), "bank");
        var shapes = setting.LogitsShapes().ToArray();
        moduleLogits = shapes.Select((shape, i) => new Parameter(Tensor.Normal(shape, 0, 0.1, seed: (ulong)(10 + i)), $"logits{i}")).ToArray();
        moduleOutputGrads = shapes.Select((shape, i) => Tensor.Normal([shape[0], shape[1], setting.VectorLength], 0, 1, seed: (ulong)(1000 + i))).ToArray();
        int subVectors = (int)setting.SubVectorCount;
        allLogits = new Parameter(Tensor.Normal([subVectors, setting.VectorCount], 0, 0.1, seed: 2), "all logits");
        allOutputGrad = Tensor.Normal([subVectors, setting.VectorLength], 0, 1, seed: 3);
    }

    [Benchmark(Baseline = true)]
    public void PerModule()
    {
        int topK = Settings[Configuration].TopK;
        for (int i = 0; i < moduleLogits.Length; i++)
        {
            ForwardBackward(moduleLogits[i], moduleOutputGrads[i], topK);
        }
        ClearGrads(moduleLogits);
    }

    [Benchmark]
    public void AllSubVectorsInOneCall()
    {
        ForwardBackward(allLogits, allOutputGrad, Settings[Configuration].TopK);
        ClearGrads([allLogits]);
    }

    private void ForwardBackward(Parameter logits, Tensor outputGrad, int topK)
    {
        using var scope = new TensorScope();
        using var tape = new Tape();
        tape.Backward(Ops.TopKAdmixture(logits, bank, topK), outputGrad);
    }

    private void ClearGrads(IEnumerable<Parameter> logits)
    {
        foreach (var parameter in logits)
        {
            parameter.ClearGrad();
        }
        bank.ClearGrad();
    }

    public static (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters)
    {
        var setting = Settings[(string)parameters[nameof(Configuration)]];
        return (3 * 2.0 * setting.SubVectorCount * setting.TopK * setting.VectorLength, "FLOP");
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var variable in moduleLogits.Append(allLogits).Append(bank))
        {
            variable.Dispose();
        }
        foreach (var tensor in moduleOutputGrads.Append(allOutputGrad))
        {
            tensor.Dispose();
        }
    }
}
