using Engine.IO;
using Engine.Training;
using ScottPlot;

namespace Engine.Cli;

/// <summary>The loss curve of a run as a PNG: training loss per step as a line, evaluation losses as points.</summary>
internal static class LossPlot
{
    public const string FileName = "loss.png";

    /// <summary>Plots <paramref name="metricsCsv"/> into <paramref name="pngPath"/> (atomically); writes nothing when it has no steps.</summary>
    public static void Write(string metricsCsv, string pngPath, string title)
    {
        var steps = MetricsLog.Read(metricsCsv);
        if (steps.Count == 0)
        {
            return;
        }
        var plot = new Plot();
        var train = plot.Add.Scatter(steps.Select(m => (double)m.Step).ToArray(), steps.Select(m => m.Loss).ToArray());
        train.LegendText = "train loss";
        train.MarkerSize = 0;
        train.LineWidth = 1.5f;
        var evaluated = steps.Where(m => m.EvalLoss is not null).ToList();
        if (evaluated.Count > 0)
        {
            var eval = plot.Add.Scatter(evaluated.Select(m => (double)m.Step).ToArray(), evaluated.Select(m => m.EvalLoss!.Value).ToArray());
            eval.LegendText = "eval loss";
            eval.LineWidth = evaluated.Count > 1 ? 1 : 0;
            eval.MarkerSize = 8;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel("loss (cross-entropy, nats/token)");
        plot.ShowLegend(Alignment.UpperRight);
        byte[] png = plot.GetImageBytes(900, 540, ImageFormat.Png);
        AtomicFile.Write(pngPath, stream => stream.Write(png));
    }
}
