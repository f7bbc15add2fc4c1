namespace Engine.Cli;

/// <summary>A bad command line or input the user can fix; reported as one line, without a stack trace.</summary>
internal sealed class UsageException(string message) : Exception(message);
