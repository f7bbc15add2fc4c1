namespace Engine;

public enum DeviceKind
{
    Cpu,
    Ilgpu,
    Cuda,
}

/// <summary>Where a tensor's storage lives. Operations require all operands on one device; copies between devices are explicit.</summary>
public sealed record Device(DeviceKind Kind, int Ordinal = 0)
{
    public static readonly Device Cpu = new(DeviceKind.Cpu);

    public override string ToString() => Kind == DeviceKind.Cpu && Ordinal == 0 ? "cpu" : $"{Kind.ToString().ToLowerInvariant()}:{Ordinal}";
}
