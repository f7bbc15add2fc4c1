using System.Text.Json;
using Engine.Autograd;
using Engine.IO;
using Engine.Training.Optimization;

namespace Engine.Training;

/// <summary>
/// A resumable training state in one folder: the method's changing parameters, the optimizer moments and a state.json
/// (step, data position, method). Written into a temporary sibling folder and swapped in, so a crash mid-write leaves the
/// previous checkpoint intact.
/// </summary>
public static class TrainingCheckpoint
{
    private const string ParametersFile = "parameters.safetensors", OptimizerFile = "optimizer.safetensors", StateFile = "state.json";

    /// <param name="Settings">The method's settings that must match to resume (<see cref="ITrainingMethod.Settings"/>).</param>
    public sealed record State(int Step, string DataState, string Method, ulong Seed, string Settings = "");

    public static void Save(string directory, IReadOnlyList<Parameter> parameters, IOptimizer optimizer, State state)
    {
        string full = Path.GetFullPath(directory);
        string parent = Path.GetDirectoryName(full)!;
        string staging = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        string retired = Path.Combine(parent, $".{Path.GetFileName(full)}.old-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            SafetensorsWriter.Write(Path.Combine(staging, ParametersFile), parameters.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Data)));
            optimizer.Save(Path.Combine(staging, OptimizerFile));
            File.WriteAllText(Path.Combine(staging, StateFile), JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }));
            if (Directory.Exists(full))
            {
                Directory.Move(full, retired);
            }
            Directory.Move(staging, full);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
            if (Directory.Exists(retired))
            {
                Directory.Delete(retired, recursive: true);
            }
        }
    }

    public static bool Exists(string directory) => File.Exists(Path.Combine(directory, StateFile));

    /// <summary>The saved step, data position, method and settings (read before anything is restored, to check they fit).</summary>
    public static State ReadState(string directory)
    {
        string statePath = Path.Combine(directory, StateFile);
        return JsonSerializer.Deserialize<State>(File.ReadAllText(statePath)) ?? throw new InvalidDataException($"{statePath}: empty training state");
    }

    /// <summary>Restores parameter values and optimizer moments; returns the saved state.</summary>
    public static State Load(string directory, IReadOnlyList<Parameter> parameters, IOptimizer optimizer)
    {
        var state = ReadState(directory);
        string parametersPath = Path.Combine(directory, ParametersFile);
        using (var file = SafetensorsFile.Open(parametersPath))
        {
            foreach (var parameter in parameters)
            {
                if (!file.Contains(parameter.Name))
                {
                    throw new InvalidDataException($"{parametersPath}: no saved value for parameter '{parameter.Name}' (was the checkpoint made by another method?)");
                }
                using var saved = file.Load(parameter.Name, parameter.DType, parameter.Device);
                if (!saved.Shape.SequenceEqual(parameter.Shape))
                {
                    throw new InvalidDataException($"{parametersPath}: '{parameter.Name}' has shape {saved.ShapeString}, the model has {parameter.Data.ShapeString}");
                }
                parameter.Data.CopyFrom(saved);
            }
        }
        optimizer.Load(Path.Combine(directory, OptimizerFile));
        return state;
    }
}
