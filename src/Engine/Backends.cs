using System.Collections.Concurrent;
using Engine.Cpu;

namespace Engine;

/// <summary>The registry that maps a <see cref="Device"/> to its backend. The CPU backend is always present.</summary>
public static class Backends
{
    private static readonly ConcurrentDictionary<Device, IBackend> registered = new() { [Device.Cpu] = CpuBackend.Instance };

    public static IBackend For(Device device) =>
        registered.TryGetValue(device, out var backend)
            ? backend
            : throw new InvalidOperationException($"no backend is registered for device {device}; available: {string.Join(", ", registered.Keys)}");

    public static void Register(IBackend backend) => registered[backend.Device] = backend;

    public static IReadOnlyCollection<Device> Available => registered.Keys.ToArray();
}
