using System.Globalization;

namespace Engine.Training;

/// <summary>metrics.csv: one row per optimizer step, flushed as written; on resume, rows past the checkpoint are dropped.</summary>
public sealed class MetricsLog : IDisposable
{
    private const string Header = "step,loss,learning_rate,grad_norm,tokens,tokens_per_second,eval_loss,elapsed_seconds";
    private readonly StreamWriter writer;

    public MetricsLog(string path, int resumeAfterStep)
    {
        Path = path;
        var kept = new List<string> { Header };
        if (resumeAfterStep > 0 && File.Exists(path))
        {
            kept.AddRange(File.ReadLines(path).Skip(1).Where(line => int.TryParse(line.Split(',')[0], CultureInfo.InvariantCulture, out int step) && step <= resumeAfterStep));
        }
        System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        writer = new StreamWriter(path, append: false);
        foreach (var line in kept)
        {
            writer.WriteLine(line);
        }
        writer.Flush();
    }

    public string Path { get; }

    public void Write(StepMetrics metrics)
    {
        string F(double value) => value.ToString("R", CultureInfo.InvariantCulture);
        writer.WriteLine(string.Join(',', metrics.Step.ToString(CultureInfo.InvariantCulture), F(metrics.Loss), F(metrics.LearningRate), F(metrics.GradNorm),
            metrics.Tokens.ToString(CultureInfo.InvariantCulture), F(metrics.TokensPerSecond), metrics.EvalLoss is { } eval ? F(eval) : "", F(metrics.ElapsedSeconds)));
        writer.Flush();
    }

    /// <summary>Reads a metrics.csv back (for plots and tests).</summary>
    public static IReadOnlyList<StepMetrics> Read(string path) =>
        File.ReadLines(path).Skip(1).Where(line => line.Length > 0).Select(line =>
        {
            var cells = line.Split(',');
            double D(int i) => double.Parse(cells[i], CultureInfo.InvariantCulture);
            return new StepMetrics(int.Parse(cells[0], CultureInfo.InvariantCulture), D(1), D(2), D(3), long.Parse(cells[4], CultureInfo.InvariantCulture), D(5), cells[6].Length > 0 ? D(6) : null, D(7));
        }).ToList();

    public void Dispose() => writer.Dispose();
}
