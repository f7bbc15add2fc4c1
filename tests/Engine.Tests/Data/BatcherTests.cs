using System.Text.Json;
using Engine.Training.Data;

namespace Engine.Tests.Data;

public sealed class BatcherTests
{
    private const int Ignore = TrainingExample.IgnoreLabel;
    private const int Eos = 2;

    // A text example, a prompt/response example whose prompt (token 20) is masked, and one without EOS.
    private static readonly TrainingExample[] Examples =
    [
        new([1, 10, 11, Eos], [Ignore, 10, 11, Eos]),
        new([1, 20, Eos], [Ignore, Ignore, Eos]),
        new([30, 31], [30, 31]),
    ];

    [Fact]
    public void Packing_CutsTheSeparatedStreamIntoRows()
    {
        var batcher = new Batcher(Examples, new BatcherOptions { BatchSize = 2, SequenceLength = 3, SeparatorId = Eos, Shuffle = false });

        // Stream: 1 10 11 2 | 1 20 2 | 30 31 +2 (separator added: the last example lacks EOS), 10 tokens in rows of 3.
        Assert.Equal(2, batcher.BatchesPerEpoch);
        Batch first = batcher.Next();
        Assert.Equal((2, 3, 0), (first.BatchSize, first.SequenceLength, first.Epoch));
        Assert.Equal([1, 10, 11, /**/ 2, 1, 20], first.InputIds);
        Assert.Equal([Ignore, 10, 11, /**/ 2, Ignore, Ignore], first.Labels);
        Assert.Equal([10, 11, Ignore, /**/ Ignore, Ignore, Ignore], first.Targets);
        Assert.Equal(2, first.TargetCount);

        Batch second = batcher.Next();
        Assert.Equal([2, 30, 31, /**/ 2, 0, 0], second.InputIds);
        Assert.Equal([2, 30, 31, /**/ 2, Ignore, Ignore], second.Labels);
        Assert.Equal([30, 31, Ignore, /**/ Ignore, Ignore, Ignore], second.Targets);
        Assert.Equal(new BatcherState(1, 0), batcher.State);
    }

    [Fact]
    public void Packing_DropLastKeepsOnlyFullBatches()
    {
        var batcher = new Batcher(Examples, new BatcherOptions { BatchSize = 1, SequenceLength = 4, SeparatorId = Eos, Shuffle = false, DropLast = true });

        Assert.Equal(2, batcher.BatchesPerEpoch);
        Assert.Equal([1, 10, 11, 2], batcher.Next().InputIds);
        Assert.Equal([1, 20, 2, 30], batcher.Next().InputIds);
        Batch nextEpoch = batcher.Next();
        Assert.Equal(1, nextEpoch.Epoch);
        Assert.Equal([1, 10, 11, 2], nextEpoch.InputIds);
    }

    [Fact]
    public void Padding_PadsToTheLongestExampleOfTheBatch()
    {
        var batcher = new Batcher(Examples, new BatcherOptions { Mode = BatchingMode.Padding, BatchSize = 2, SequenceLength = 8, PadId = 7, Shuffle = false });

        Batch first = batcher.Next();
        Assert.Equal((2, 4), (first.BatchSize, first.SequenceLength));
        Assert.Equal([1, 10, 11, 2, /**/ 1, 20, 2, 7], first.InputIds);
        Assert.Equal([Ignore, 10, 11, 2, /**/ Ignore, Ignore, 2, Ignore], first.Labels);
        Assert.Equal([10, 11, 2, Ignore, /**/ Ignore, 2, Ignore, Ignore], first.Targets);

        Batch last = batcher.Next();
        Assert.Equal((1, 2), (last.BatchSize, last.SequenceLength));
        Assert.Equal([30, 31], last.InputIds);
        Assert.Equal([31, Ignore], last.Targets);
    }

    [Fact]
    public void Padding_ToSequenceLength()
    {
        var batcher = new Batcher(Examples, new BatcherOptions { Mode = BatchingMode.Padding, BatchSize = 3, SequenceLength = 5, PadToSequenceLength = true, Shuffle = false });

        Batch batch = batcher.Next();

        Assert.Equal((3, 5), (batch.BatchSize, batch.SequenceLength));
        Assert.Equal([1, 10, 11, 2, 0, /**/ 1, 20, 2, 0, 0, /**/ 30, 31, 0, 0, 0], batch.InputIds);
        Assert.Equal([10, 11, 2, Ignore, Ignore, /**/ Ignore, 2, Ignore, Ignore, Ignore, /**/ 31, Ignore, Ignore, Ignore, Ignore], batch.Targets);
    }

    [Fact]
    public void Padding_RejectsAnExampleLongerThanTheSequenceLength()
    {
        var error = Assert.Throws<ArgumentException>(() => new Batcher(Examples, new BatcherOptions { Mode = BatchingMode.Padding, BatchSize = 2, SequenceLength = 3 }));

        Assert.Contains("Example 0 has 4 tokens", error.Message);
    }

    [Fact]
    public void Shuffling_IsReproducibleFromSeedAndEpoch()
    {
        TrainingExample[] examples = ManyExamples(40);
        var options = new BatcherOptions { Mode = BatchingMode.Padding, BatchSize = 4, SequenceLength = 8, Seed = 7 };
        var first = new Batcher(examples, options);
        var second = new Batcher(examples, options);
        var otherSeed = new Batcher(examples, options with { Seed = 8 });

        Assert.Equal(first.ExampleOrder(0), second.ExampleOrder(0));
        Assert.Equal(first.ExampleOrder(3), second.ExampleOrder(3));
        Assert.NotEqual(first.ExampleOrder(0), first.ExampleOrder(1));
        Assert.NotEqual(first.ExampleOrder(0), otherSeed.ExampleOrder(0));
        Assert.Equal(Enumerable.Range(0, 40), first.ExampleOrder(0).Order());
        for (int i = 0; i < 25; i++)
        {
            Assert.Equal(first.Next().InputIds, second.Next().InputIds);
        }
    }

    [Theory]
    [InlineData(BatchingMode.Packing, 3)]
    [InlineData(BatchingMode.Packing, 11)]
    [InlineData(BatchingMode.Padding, 4)]
    [InlineData(BatchingMode.Padding, 9)]
    public void ResumingFromASavedState_GivesTheSameNextBatches(BatchingMode mode, int batchesBeforeCheckpoint)
    {
        TrainingExample[] examples = ManyExamples(23);
        var options = new BatcherOptions { Mode = mode, BatchSize = 3, SequenceLength = 8, SeparatorId = Eos, Seed = 42 };
        var uninterrupted = new Batcher(examples, options);
        var interrupted = new Batcher(examples, options);
        for (int i = 0; i < batchesBeforeCheckpoint; i++)
        {
            uninterrupted.Next();
            interrupted.Next();
        }

        string checkpoint = JsonSerializer.Serialize(interrupted.State);
        var resumed = new Batcher(examples, options) { State = JsonSerializer.Deserialize<BatcherState>(checkpoint) };

        // Run across at least one epoch boundary.
        for (int i = 0; i < 2 * uninterrupted.BatchesPerEpoch; i++)
        {
            Batch expected = uninterrupted.Next();
            Batch actual = resumed.Next();
            Assert.Equal(expected.InputIds, actual.InputIds);
            Assert.Equal(expected.Targets, actual.Targets);
            Assert.Equal(expected.Epoch, actual.Epoch);
        }

        Assert.Equal(uninterrupted.State, resumed.State);
    }

    [Fact]
    public void State_RejectsAPositionOutsideTheEpoch()
    {
        var batcher = new Batcher(Examples, new BatcherOptions { Mode = BatchingMode.Padding, BatchSize = 2, SequenceLength = 8 });

        Assert.Throws<ArgumentOutOfRangeException>(() => batcher.State = new BatcherState(0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => batcher.State = new BatcherState(-1, 0));
    }

    [Fact]
    public void Examples_RequireAlignedLabels()
        => Assert.Throws<ArgumentException>(() => new TrainingExample([1, 2], [1]));

    /// <summary>Examples of varied lengths (2..7) with distinct tokens, some ending in EOS.</summary>
    private static TrainingExample[] ManyExamples(int count)
        => Enumerable.Range(0, count).Select(i =>
        {
            int[] ids = Enumerable.Range(0, 2 + i % 6).Select(t => 100 + 10 * i + t).ToArray();
            if (i % 3 == 0)
            {
                ids[^1] = Eos;
            }

            return new TrainingExample(ids, ids.Select((id, t) => t == 0 ? Ignore : id).ToArray());
        }).ToArray();
}
