using System.Collections;
using System.Text;
using System.Text.Json;
using Engine.Model.Tokenization;

namespace Engine.Training.Data;

/// <summary>
/// Training examples read from a JSON Lines file, one JSON object per line, in one of three forms:
/// <list type="bullet">
/// <item><c>{"text": "..."}</c>: loss on every token (BOS excepted).</item>
/// <item><c>{"prompt": "...", "response": "..."}</c>: loss on the response tokens and the EOS only. Prompt and
/// response are encoded separately and concatenated as they are, so any separator or chat template belongs in the
/// prompt text.</item>
/// <item><c>{"input_ids": [...], "labels": [...]}</c>: pre-tokenized and taken verbatim (no BOS/EOS added);
/// "labels" is optional (default: equal to input_ids) and uses -100 for "no loss".</item>
/// </list>
/// Other members (ids, metadata) are ignored.
/// </summary>
public sealed class JsonlDataset : IReadOnlyList<TrainingExample>
{
    private readonly List<TrainingExample> _examples;

    private JsonlDataset(string path, List<TrainingExample> examples, int truncatedCount, int droppedCount)
    {
        Path = path;
        _examples = examples;
        TruncatedCount = truncatedCount;
        DroppedCount = droppedCount;
    }

    public string Path { get; }

    /// <summary>Examples cut to <see cref="DataOptions.MaxLength"/>.</summary>
    public int TruncatedCount { get; }

    /// <summary>
    /// Examples left out: over-long ones under <see cref="OverlengthPolicy.Drop"/>, and truncated ones left with no
    /// position that takes loss (a prompt longer than MaxLength).
    /// </summary>
    public int DroppedCount { get; }

    public int Count => _examples.Count;

    public TrainingExample this[int index] => _examples[index];

    public IEnumerator<TrainingExample> GetEnumerator() => _examples.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Reads <paramref name="path"/> line by line.</summary>
    /// <param name="path">The .jsonl file.</param>
    /// <param name="tokenizer">Encodes "text"/"prompt"/"response"; may be null when every line is pre-tokenized.</param>
    /// <param name="options">Framing and limits; <see cref="DataOptions.Default"/> when null.</param>
    /// <exception cref="InvalidDataException">A line is malformed; the message starts with "{path}, line {n}:".</exception>
    /// <exception cref="ArgumentException">AddBos/AddEos is set but the tokenizer has no such token.</exception>
    public static JsonlDataset Load(string path, ITextTokenizer? tokenizer, DataOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        options ??= DataOptions.Default;
        if (options.MaxLength is int maxLength)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1, "options.MaxLength");
        }

        var parser = new LineParser(path, tokenizer, options);
        var examples = new List<TrainingExample>();
        int truncated = 0, dropped = 0, lineNumber = 0;
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        while (reader.ReadLine() is string line)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                if (options.SkipBlankLines)
                {
                    continue;
                }

                throw parser.Error(lineNumber, "is blank (set DataOptions.SkipBlankLines to skip such lines)");
            }

            TrainingExample example = parser.Parse(line, lineNumber);
            if (options.MaxLength is int limit && example.Length > limit)
            {
                if (options.Overlength == OverlengthPolicy.Drop)
                {
                    dropped++;
                    continue;
                }

                example = new TrainingExample(example.InputIds[..limit], example.Labels[..limit]);
                if (example.SupervisedCount == 0)
                {
                    dropped++;
                    continue;
                }

                truncated++;
            }

            examples.Add(example);
        }

        return new JsonlDataset(path, examples, truncated, dropped);
    }

    /// <summary>Turns one line into an example; every error names the file and line.</summary>
    private sealed class LineParser
    {
        private readonly string _path;
        private readonly ITextTokenizer? _tokenizer;
        private readonly int? _bosId;
        private readonly int? _eosId;
        private readonly int? _vocabularySize;

        public LineParser(string path, ITextTokenizer? tokenizer, DataOptions options)
        {
            _path = path;
            _tokenizer = tokenizer;
            _bosId = SpecialId(options.AddBos, tokenizer?.BosId, nameof(DataOptions.AddBos), "BOS");
            _eosId = SpecialId(options.AddEos, tokenizer?.EosId, nameof(DataOptions.AddEos), "EOS");
            _vocabularySize = options.VocabularySize ?? tokenizer?.VocabularySize;
        }

        public InvalidDataException Error(int line, string problem) => new($"{_path}, line {line}: {problem}");

        public TrainingExample Parse(string line, int lineNumber)
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(line);
            }
            catch (JsonException e)
            {
                throw Error(lineNumber, $"is not valid JSON ({e.Message})");
            }

            using (document)
            {
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object)
                {
                    throw Error(lineNumber, $"must be a JSON object, not {root.ValueKind}");
                }

                string[] forms = new[]
                {
                    Has(root, "text") ? "\"text\"" : null,
                    Has(root, "prompt") || Has(root, "response") ? "\"prompt\"/\"response\"" : null,
                    Has(root, "input_ids") || Has(root, "labels") ? "\"input_ids\"/\"labels\"" : null,
                }.OfType<string>().ToArray();
                if (forms.Length == 0)
                {
                    throw Error(lineNumber, "has none of the fields \"text\", \"prompt\"/\"response\" or \"input_ids\"");
                }

                if (forms.Length > 1)
                {
                    throw Error(lineNumber, $"mixes the forms {string.Join(" and ", forms)}; use exactly one");
                }

                TrainingExample example = Has(root, "text") ? FromText(root, lineNumber)
                    : Has(root, "input_ids") || Has(root, "labels") ? FromIds(root, lineNumber)
                    : FromPromptResponse(root, lineNumber);
                CheckVocabulary(example, lineNumber);
                return example;
            }
        }

        private int? SpecialId(bool? requested, int? tokenizerId, string option, string name)
        {
            bool add = requested ?? tokenizerId is not null;
            if (add && tokenizerId is null)
            {
                throw new ArgumentException($"DataOptions.{option} is set but the tokenizer has no {name} token.", "options");
            }

            return add ? tokenizerId : null;
        }

        private static bool Has(JsonElement root, string name) => root.TryGetProperty(name, out _);

        private TrainingExample FromText(JsonElement root, int lineNumber)
        {
            IReadOnlyList<int> tokens = EncodeField(root, "text", lineNumber);
            return Frame([], tokens);
        }

        private TrainingExample FromPromptResponse(JsonElement root, int lineNumber)
        {
            if (!Has(root, "prompt") || !Has(root, "response"))
            {
                throw Error(lineNumber, Has(root, "prompt") ? "has \"prompt\" but no \"response\"" : "has \"response\" but no \"prompt\"");
            }

            IReadOnlyList<int> prompt = EncodeField(root, "prompt", lineNumber, allowEmpty: true);
            IReadOnlyList<int> response = EncodeField(root, "response", lineNumber);
            return Frame(prompt, response);
        }

        /// <summary>[BOS] prompt response [EOS], with loss on the response and EOS.</summary>
        private TrainingExample Frame(IReadOnlyList<int> unsupervised, IReadOnlyList<int> supervised)
        {
            var ids = new List<int>(unsupervised.Count + supervised.Count + 2);
            var labels = new List<int>(ids.Capacity);
            if (_bosId is int bos)
            {
                ids.Add(bos);
                labels.Add(TrainingExample.IgnoreLabel);
            }

            ids.AddRange(unsupervised);
            labels.AddRange(Enumerable.Repeat(TrainingExample.IgnoreLabel, unsupervised.Count));
            ids.AddRange(supervised);
            labels.AddRange(supervised);
            if (_eosId is int eos)
            {
                ids.Add(eos);
                labels.Add(eos);
            }

            return new TrainingExample([.. ids], [.. labels]);
        }

        private IReadOnlyList<int> EncodeField(JsonElement root, string name, int lineNumber, bool allowEmpty = false)
        {
            JsonElement value = root.GetProperty(name);
            if (value.ValueKind != JsonValueKind.String)
            {
                throw Error(lineNumber, $"\"{name}\" must be a string, not {value.ValueKind}");
            }

            if (_tokenizer is null)
            {
                throw Error(lineNumber, $"\"{name}\" needs a tokenizer to encode it, but none was given");
            }

            string text = value.GetString()!;
            IReadOnlyList<int> tokens = _tokenizer.Encode(text);
            if (!allowEmpty && tokens.Count == 0)
            {
                throw Error(lineNumber, text.Length == 0 ? $"\"{name}\" is empty" : $"\"{name}\" encodes to no tokens");
            }

            return tokens;
        }

        private TrainingExample FromIds(JsonElement root, int lineNumber)
        {
            if (!Has(root, "input_ids"))
            {
                throw Error(lineNumber, "has \"labels\" but no \"input_ids\"");
            }

            int[] ids = ReadIntegers(root, "input_ids", lineNumber);
            if (ids.Length == 0)
            {
                throw Error(lineNumber, "\"input_ids\" is empty");
            }

            if (!Has(root, "labels"))
            {
                return new TrainingExample(ids, (int[])ids.Clone());
            }

            int[] labels = ReadIntegers(root, "labels", lineNumber);
            if (labels.Length != ids.Length)
            {
                throw Error(lineNumber, $"\"labels\" has {labels.Length} entries but \"input_ids\" has {ids.Length}");
            }

            for (int i = 0; i < labels.Length; i++)
            {
                if (labels[i] != TrainingExample.IgnoreLabel && !IsValidId(labels[i]))
                {
                    throw Error(lineNumber, $"labels[{i}] = {labels[i]} is neither -100 nor a token id{VocabularyRange()}");
                }
            }

            return new TrainingExample(ids, labels);
        }

        private int[] ReadIntegers(JsonElement root, string name, int lineNumber)
        {
            JsonElement array = root.GetProperty(name);
            if (array.ValueKind != JsonValueKind.Array)
            {
                throw Error(lineNumber, $"\"{name}\" must be an array of integers, not {array.ValueKind}");
            }

            var values = new int[array.GetArrayLength()];
            int index = 0;
            foreach (JsonElement item in array.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out values[index]))
                {
                    throw Error(lineNumber, $"{name}[{index}] must be a 32-bit integer, not {item.GetRawText()}");
                }

                index++;
            }

            return values;
        }

        private void CheckVocabulary(TrainingExample example, int lineNumber)
        {
            for (int i = 0; i < example.InputIds.Length; i++)
            {
                if (!IsValidId(example.InputIds[i]))
                {
                    throw Error(lineNumber, $"token {i} has id {example.InputIds[i]}, outside the vocabulary{VocabularyRange()}");
                }
            }
        }

        private bool IsValidId(int id) => id >= 0 && (_vocabularySize is not int size || id < size);

        private string VocabularyRange() => _vocabularySize is int size ? $" (0..{size - 1})" : " (ids are non-negative)";
    }
}
