using System.CommandLine;
using Engine.Cpu;
using Spectre.Console;

namespace Engine.Cli;

/// <summary>
/// One invocation's streams and global options. Results go to stdout; progress, notes and errors to stderr, so
/// stdout can be parsed (eval --json) or piped (generate).
/// </summary>
internal sealed class CliContext(TextWriter stdout, TextWriter stderr, GlobalOptions global)
{
    private IAnsiConsole? outConsole;
    private IAnsiConsole? errorConsole;

    public TextWriter Out => stdout;

    public TextWriter Error => stderr;

    public GlobalOptions Global => global;

    /// <summary>Spectre console over stdout (tables); wide when not a terminal so tables are not squeezed to 80 columns.</summary>
    public IAnsiConsole OutConsole => outConsole ??= CreateConsole(stdout);

    /// <summary>Spectre console over stderr (progress displays).</summary>
    public IAnsiConsole ErrorConsole => errorConsole ??= CreateConsole(stderr);

    /// <summary>Whether stderr is a terminal that can host a live progress display.</summary>
    public bool IsInteractive => ErrorConsole.Profile.Out.IsTerminal && ErrorConsole.Profile.Capabilities.Interactive && ErrorConsole.Profile.Capabilities.Ansi;

    public void Note(string text) => stderr.WriteLine(text);

    public void Warn(string text) => stderr.WriteLine(Colored("warning:", "33") + " " + text);

    /// <summary>Written by hand rather than through Spectre, which would wrap a long path over several lines.</summary>
    public void ReportError(string text) => stderr.WriteLine(Colored("error: " + text, "31"));

    /// <summary>Colour only on a terminal: files, pipes and captured output get plain text.</summary>
    private string Colored(string text, string ansiColor) =>
        ErrorConsole.Profile.Out.IsTerminal && ErrorConsole.Profile.Capabilities.Ansi ? $"\u001b[{ansiColor}m{text}\u001b[0m" : text;

    /// <summary>Applies --threads and resolves --device; returns the device and --seed.</summary>
    public (Device Device, int Seed) Prepare(ParseResult parse)
    {
        if (parse.GetValue(global.Threads) is int threads)
        {
            CpuBackend.Instance.Threads = threads;
        }
        return (DeviceSelection.Resolve(parse.GetRequiredValue(global.Device), stderr), parse.GetValue(global.Seed));
    }

    private static IAnsiConsole CreateConsole(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(writer) });
        if (!console.Profile.Out.IsTerminal)
        {
            console.Profile.Width = 200;
        }
        return console;
    }
}
