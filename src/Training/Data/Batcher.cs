namespace Engine.Training.Data;

/// <summary>
/// Cuts training examples into <see cref="Batch"/>es, epoch after epoch, in packing or padding mode
/// (<see cref="BatchingMode"/>). Each epoch visits the examples in an order shuffled by
/// <c>new Random(seed mixed with epoch)</c>, so the order depends only on (<see cref="BatcherOptions.Seed"/>, epoch), and
/// <see cref="State"/> can be saved and restored to resume with exactly the batch that would have come next.
/// </summary>
public sealed class Batcher
{
    private readonly IReadOnlyList<TrainingExample> _examples;
    private readonly BatcherOptions _options;
    private readonly int _epochLength;
    private BatcherState _state;
    private int _orderEpoch = -1;
    private int[] _order = [];
    private int[] _streamStarts = [];

    /// <exception cref="ArgumentException">
    /// No examples, an option out of range, in padding mode an example longer than SequenceLength, or (with
    /// DropLast) too little data for one full batch.
    /// </exception>
    public Batcher(IReadOnlyList<TrainingExample> examples, BatcherOptions options)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.BatchSize, 1, "options.BatchSize");
        ArgumentOutOfRangeException.ThrowIfLessThan(options.SequenceLength, 2, "options.SequenceLength");
        if (examples.Count == 0)
        {
            throw new ArgumentException("There are no training examples to batch.", nameof(examples));
        }

        _examples = examples;
        _options = options;
        if (options.Mode == BatchingMode.Padding)
        {
            for (int i = 0; i < examples.Count; i++)
            {
                if (examples[i].Length > options.SequenceLength)
                {
                    throw new ArgumentException(
                        $"Example {i} has {examples[i].Length} tokens, more than SequenceLength {options.SequenceLength}; "
                        + "limit examples with DataOptions.MaxLength or use packing.", nameof(examples));
                }
            }

            _epochLength = examples.Count;
            BatchesPerEpoch = options.DropLast ? _epochLength / options.BatchSize : CeilingDivide(_epochLength, options.BatchSize);
        }
        else
        {
            long tokens = examples.Sum(e => (long)PackedLength(e));
            _epochLength = tokens <= int.MaxValue
                ? (int)tokens
                : throw new ArgumentException($"The examples pack to {tokens} tokens per epoch; at most {int.MaxValue} are supported.", nameof(examples));
            long tokensPerBatch = (long)options.BatchSize * options.SequenceLength;
            BatchesPerEpoch = (int)(options.DropLast
                ? _epochLength / tokensPerBatch
                : CeilingDivide(CeilingDivide(_epochLength, options.SequenceLength), options.BatchSize));
        }

        if (BatchesPerEpoch == 0)
        {
            throw new ArgumentException($"With DropLast the {examples.Count} examples do not fill one batch.", nameof(examples));
        }
    }

    /// <summary>Batches in every epoch (the same for all epochs: shuffling changes order, not size).</summary>
    public int BatchesPerEpoch { get; }

    /// <summary>Where the next batch starts. Set it to a saved value to resume.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Epoch is negative or Position is outside the epoch.</exception>
    public BatcherState State
    {
        get => _state;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value.Epoch, nameof(BatcherState.Epoch));
            if (value.Position < 0 || value.Position >= _epochLength)
            {
                throw new ArgumentOutOfRangeException(nameof(value), value.Position, $"Position must be in 0..{_epochLength - 1} for these examples.");
            }

            _state = value;
        }
    }

    /// <summary>The order in which <paramref name="epoch"/> visits the examples (indices into the example list).</summary>
    public IReadOnlyList<int> ExampleOrder(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return ComputeOrder(epoch);
    }

    private int[] ComputeOrder(int epoch)
    {
        int[] order = Enumerable.Range(0, _examples.Count).ToArray();
        if (_options.Shuffle)
        {
            new Random(EpochSeed(_options.Seed, epoch)).Shuffle(order);
        }

        return order;
    }

    /// <summary>Returns the next batch and advances <see cref="State"/>, moving to the next epoch after its last batch.</summary>
    public Batch Next()
    {
        if (!HasBatchAt(_state.Position))
        {
            _state = new BatcherState(_state.Epoch + 1, 0);
        }

        PrepareEpoch(_state.Epoch);
        Batch batch = _options.Mode == BatchingMode.Padding ? NextPadded() : NextPacked();
        if (!HasBatchAt(_state.Position))
        {
            _state = new BatcherState(_state.Epoch + 1, 0);
        }

        return batch;
    }

    /// <summary>
    /// A 31-bit seed from (seed, epoch) through SplitMix64's finalizer, so neighbouring epochs and seeds get unrelated
    /// orders. (HashCode.Combine would differ from process to process.)
    /// </summary>
    private static int EpochSeed(int seed, int epoch)
    {
        ulong z = (((ulong)(uint)seed << 32) | (uint)epoch) + 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)((z ^ (z >> 31)) & int.MaxValue);
    }

    private static int CeilingDivide(int value, int divisor) => (int)(((long)value + divisor - 1) / divisor);

    private bool NeedsSeparator(TrainingExample example) => _options.SeparatorId is int separator && example.InputIds[^1] != separator;

    private int PackedLength(TrainingExample example) => example.Length + (NeedsSeparator(example) ? 1 : 0);

    private bool HasBatchAt(int position)
    {
        int remaining = _epochLength - position;
        int fullBatch = _options.Mode == BatchingMode.Padding ? _options.BatchSize : _options.BatchSize * _options.SequenceLength;
        return _options.DropLast ? remaining >= fullBatch : remaining > 0;
    }

    private void PrepareEpoch(int epoch)
    {
        if (epoch == _orderEpoch)
        {
            return;
        }

        _order = ComputeOrder(epoch);
        if (_options.Mode == BatchingMode.Packing)
        {
            _streamStarts = new int[_order.Length];
            int start = 0;
            for (int i = 0; i < _order.Length; i++)
            {
                _streamStarts[i] = start;
                start += PackedLength(_examples[_order[i]]);
            }
        }

        _orderEpoch = epoch;
    }

    private Batch NextPadded()
    {
        int first = _state.Position;
        int rows = Math.Min(_options.BatchSize, _epochLength - first);
        int length = _options.PadToSequenceLength
            ? _options.SequenceLength
            : Enumerable.Range(first, rows).Max(i => _examples[_order[i]].Length);
        (int[] ids, int[] labels) = NewRows(rows, length);
        for (int row = 0; row < rows; row++)
        {
            TrainingExample example = _examples[_order[first + row]];
            example.InputIds.CopyTo(ids, row * length);
            example.Labels.CopyTo(labels, row * length);
        }

        _state = _state with { Position = first + rows };
        return Assemble(ids, labels, rows, length);
    }

    private Batch NextPacked()
    {
        int start = _state.Position;
        int length = _options.SequenceLength;
        int remaining = _epochLength - start;
        int rows = Math.Min(_options.BatchSize, CeilingDivide(remaining, length));
        int count = Math.Min(rows * length, remaining);
        (int[] ids, int[] labels) = NewRows(rows, length);

        // Find the example holding stream offset `start`, then copy example after example.
        int k = Array.BinarySearch(_streamStarts, start);
        k = k >= 0 ? k : ~k - 1;
        int offset = start - _streamStarts[k];
        int written = 0;
        while (written < count)
        {
            TrainingExample example = _examples[_order[k]];
            int take = Math.Min(PackedLength(example) - offset, count - written);
            for (int i = 0; i < take; i++, offset++, written++)
            {
                bool isSeparator = offset == example.Length;
                ids[written] = isSeparator ? _options.SeparatorId!.Value : example.InputIds[offset];
                labels[written] = isSeparator ? _options.SeparatorId!.Value : example.Labels[offset];
            }

            k++;
            offset = 0;
        }

        _state = _state with { Position = start + count };
        return Assemble(ids, labels, rows, length);
    }

    private (int[] Ids, int[] Labels) NewRows(int rows, int length)
    {
        var ids = new int[rows * length];
        var labels = new int[rows * length];
        Array.Fill(ids, _options.PadId);
        Array.Fill(labels, TrainingExample.IgnoreLabel);
        return (ids, labels);
    }

    private Batch Assemble(int[] ids, int[] labels, int rows, int length)
    {
        var targets = new int[rows * length];
        for (int row = 0; row < rows; row++)
        {
            int rowStart = row * length;
            Array.Copy(labels, rowStart + 1, targets, rowStart, length - 1);
            targets[rowStart + length - 1] = TrainingExample.IgnoreLabel;
        }

        return new Batch(ids, labels, targets, rows, length, _state.Epoch);
    }
}
