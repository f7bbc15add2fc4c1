using System.CommandLine;
using Engine.Cli.Commands;
using Engine.Training;

namespace Engine.Cli;

/// <summary>The <c>engine</c> command line; <see cref="Run"/> is the whole program, callable in-process (tests).</summary>
public static class EngineCli
{
    /// <summary>Exit code for bad input, failed runs and parse errors.</summary>
    public const int ErrorExitCode = 1;

    /// <summary>Parses and runs <paramref name="args"/>; returns the exit code (0 success, 1 error, 130 interrupted training).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var global = new GlobalOptions();
        var cli = new CliContext(stdout, stderr, global);
        var root = new RootCommand("engine: pretrain, fine-tune, evaluate and sample Llama-style models on the CPU.") { HelpName = "engine" };
        global.AddTo(root);
        root.Subcommands.Add(PretrainCommand.Create(cli));
        root.Subcommands.Add(TrainCommand.Create(cli));
        root.Subcommands.Add(EvalCommand.Create(cli));
        root.Subcommands.Add(GenerateCommand.Create(cli));
        root.Subcommands.Add(MergeCommand.Create(cli));
        root.Subcommands.Add(DemoCommand.Create(cli));

        var parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                cli.ReportError(error.Message);
            }
            string command = parse.CommandResult.Command == root ? "engine" : $"engine {parse.CommandResult.Command.Name}";
            stderr.WriteLine($"see '{command} --help'");
            return ErrorExitCode;
        }
        try
        {
            // Ctrl+C is handled by the training commands themselves (stop after the current step), not by System.CommandLine.
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null });
        }
        catch (Exception error) when (error is not OutOfMemoryException)
        {
            cli.ReportError(Describe(error));
            if (parse.GetValue(global.Verbose))
            {
                stderr.WriteLine(error.ToString());
            }
            return ErrorExitCode;
        }
    }

    /// <summary>One line: the message alone for input errors (they name the file and field); the type too for anything unexpected.</summary>
    private static string Describe(Exception error)
    {
        string message = error.Message.ReplaceLineEndings(" ");
        return error switch
        {
            ArgumentException { ParamName: { } name } => message.Replace($" (Parameter '{name}')", ""),
            UsageException or IOException or InvalidDataException or ArgumentException or NotSupportedException or TrainingDivergedException or UnauthorizedAccessException => message,
            _ => $"{message} ({error.GetType().Name}; --verbose shows where)",
        };
    }
}
