using System.Runtime.InteropServices;

namespace Engine.Cli;

/// <summary>
/// Turns the first Ctrl+C (SIGINT) or SIGTERM into a cancellation request, so training stops after the current step;
/// a second one terminates the process as usual.
/// </summary>
internal sealed class InterruptSignal : IDisposable
{
    private readonly CancellationTokenSource source = new();
    private readonly PosixSignalRegistration[] registrations;

    public InterruptSignal(CliContext cli)
    {
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];

        void Handle(PosixSignalContext context)
        {
            if (source.IsCancellationRequested)
            {
                return;
            }
            context.Cancel = true;
            cli.Note("interrupt: stopping after the current step (press Ctrl+C again to quit at once)");
            source.Cancel();
        }
    }

    public CancellationToken Token => source.Token;

    public void Dispose()
    {
        foreach (var registration in registrations)
        {
            registration.Dispose();
        }
        source.Dispose();
    }
}
