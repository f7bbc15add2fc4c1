namespace Engine.Autograd;

/// <summary>Thread-local switch for recording: inside <see cref="NoGrad"/> no operation is recorded and nothing is saved for backward.</summary>
public static class GradMode
{
    [ThreadStatic] private static int disabledDepth;

    public static bool IsEnabled => disabledDepth == 0;

    /// <summary>using (GradMode.NoGrad()) { ... } for inference and evaluation.</summary>
    public static IDisposable NoGrad()
    {
        disabledDepth++;
        return new Restore();
    }

    private sealed class Restore : IDisposable
    {
        private bool done;

        public void Dispose()
        {
            if (!done)
            {
                done = true;
                disabledDepth--;
            }
        }
    }
}
