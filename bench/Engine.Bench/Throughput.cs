using System.Reflection;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Engine.Bench;

/// <summary>
/// A benchmark class that knows how much work one invocation does: bytes moved (memory-bound kernels) or floating-point
/// operations (compute-bound), so the table can show GB/s or GFLOP/s next to the time.
/// </summary>
public interface IWorkload
{
    static abstract (double Amount, string Unit) Work(string method, IReadOnlyDictionary<string, object> parameters);
}

/// <summary>Amount / mean time, e.g. "182.4 GFLOP/s" or "21.3 GB/s".</summary>
public sealed class ThroughputColumn : IColumn
{
    public string Id => nameof(ThroughputColumn);

    public string ColumnName => "Throughput";

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => 0;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => "Work per invocation divided by the mean time (GB/s for memory-bound kernels, GFLOP/s for compute-bound)";

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var report = summary[benchmarkCase];
        var work = benchmarkCase.Descriptor.Type.GetMethod(nameof(IWorkload.Work), BindingFlags.Public | BindingFlags.Static);
        if (report?.ResultStatistics is null || work is null)
        {
            return "-";
        }
        var parameters = benchmarkCase.Parameters.Items.ToDictionary(item => item.Name, item => item.Value);
        var (amount, unit) = ((double, string))work.Invoke(null, [benchmarkCase.Descriptor.WorkloadMethod.Name, parameters])!;
        double perSecond = amount / (report.ResultStatistics.Mean * 1e-9);
        var (scale, prefix) = perSecond >= 1e9 ? (1e9, "G") : perSecond >= 1e6 ? (1e6, "M") : (1e3, "k");
        return $"{perSecond / scale:F1} {prefix}{unit}/s";
    }
}

/// <summary>Short runs (a few iterations) with the throughput column: the whole suite stays within minutes on two cores.</summary>
public sealed class ThroughputConfig : ManualConfig
{
    public ThroughputConfig()
    {
        AddJob(Job.ShortRun.WithWarmupCount(2).WithIterationCount(5).WithLaunchCount(1));
        AddColumn(new ThroughputColumn());
    }
}
