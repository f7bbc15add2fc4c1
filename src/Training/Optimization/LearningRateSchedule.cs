namespace Engine.Training.Optimization;

public enum ScheduleKind
{
    Constant,
    Linear,
    Cosine,
}

/// <summary>
/// Learning-rate multiplier per optimizer step, as Hugging Face's get_*_schedule_with_warmup: linear warmup from 0
/// over <see cref="WarmupSteps"/>, then constant, linear decay to 0, or half-cosine decay to 0 at <see cref="TotalSteps"/>.
/// </summary>
public sealed record LearningRateSchedule(ScheduleKind Kind, int WarmupSteps, int TotalSteps)
{
    /// <summary>The multiplier for the update made after <paramref name="completedSteps"/> earlier updates.</summary>
    public double Multiplier(int completedSteps)
    {
        if (completedSteps < WarmupSteps)
        {
            return (double)completedSteps / Math.Max(1, WarmupSteps);
        }
        double progress = (double)(completedSteps - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        return Kind switch
        {
            ScheduleKind.Constant => 1.0,
            ScheduleKind.Linear => Math.Max(0.0, 1.0 - progress),
            _ => Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * progress))),
        };
    }
}
