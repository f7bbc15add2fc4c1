namespace Engine.Cli;

/// <summary>Maps --device to a registered backend's device.</summary>
internal static class DeviceSelection
{
    public static readonly string[] Names = ["cpu", "auto", "cuda", "ilgpu"];

    /// <summary>auto prefers an accelerator when one is registered and says which device it chose.</summary>
    public static Device Resolve(string name, TextWriter notes)
    {
        var available = Backends.Available;
        if (name == "auto")
        {
            var chosen = available.FirstOrDefault(device => device.Kind != DeviceKind.Cpu) ?? Device.Cpu;
            notes.WriteLine($"--device auto: using {chosen}");
            return chosen;
        }
        var kind = Enum.Parse<DeviceKind>(name, ignoreCase: true);
        return available.FirstOrDefault(device => device.Kind == kind)
            ?? throw new UsageException($"--device {name}: the {name} backend is not available in this build yet (available: {string.Join(", ", available)})");
    }
}
