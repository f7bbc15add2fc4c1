using Engine.Training;

namespace Engine.Cli;

/// <summary>The fine-tuning methods --method selects (adapter methods join this list as they arrive).</summary>
internal static class TrainingMethods
{
    public static readonly string[] Names = ["full"];

    public static ITrainingMethod Create(string name) => name switch
    {
        "full" => new FullFineTuning(),
        _ => throw new UsageException($"--method {name}: unknown method; known methods: {string.Join(", ", Names)}"),
    };
}
