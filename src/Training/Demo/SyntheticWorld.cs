using Engine.Training.Data;
using System.Text;
using System.Text.Json;
using Engine.IO;

namespace Engine.Training.Demo;

/// <summary>
/// A seeded, procedurally generated world for the built-in demo. Entities with invented names (syllable strings, one word
/// each) have one value per attribute (city, job, favourite colour, pet, ...), each drawn uniformly from a small value set.
/// The pretraining corpus covers the <em>known</em> entities only: short biographies stating every fact in every statement
/// template, and one question/answer document per fact and question template. From it a tiny model learns the facts and
/// the skill of answering every phrasing of a question from them.
/// <para>
/// The downstream task is about <em>new</em> entities whose names never occur in pretraining, so the base model can only
/// guess among an attribute's values (chance is 1 / <see cref="WorldOptions.ValuesPerAttribute"/>). Fine-tuning teaches their
/// facts through some question templates; the held-out evaluation asks the same facts with the remaining templates, which
/// the model met only in pretraining, so it measures whether the new facts became knowledge rather than memorised strings.
/// </para>
/// Texts are lowercase with punctuation as separate words, so a whitespace split equals a word-level tokenizer's split.
/// </summary>
public sealed class SyntheticWorld
{
    public WorldOptions Options { get; }

    public IReadOnlyList<WorldAttribute> Attributes { get; }

    /// <summary>Entities whose facts the pretraining corpus states and asks about.</summary>
    public IReadOnlyList<WorldEntity> KnownEntities { get; }

    /// <summary>Entities that appear only in the fine-tuning and evaluation sets.</summary>
    public IReadOnlyList<WorldEntity> NewEntities { get; }

    /// <summary>One short document per entry, in shuffled order.</summary>
    public IReadOnlyList<string> PretrainingTexts { get; }

    /// <summary>New entities' facts asked with the first <see cref="WorldOptions.FineTuneQuestionTemplates"/> templates.</summary>
    public IReadOnlyList<PromptResponse> FineTuneTrain { get; }

    /// <summary>The same facts asked with the remaining (held-out) question templates: the demo's headline accuracy.</summary>
    public IReadOnlyList<PromptResponse> FineTuneEval { get; }

    /// <summary>The fine-tuning questions themselves: tells "did not learn the facts" from "did not transfer them".</summary>
    public IReadOnlyList<PromptResponse> FineTuneEvalInDistribution { get; }

    /// <summary>Questions about known entities (all seen in pretraining): shows whether pretraining took.</summary>
    public IReadOnlyList<PromptResponse> PretrainEval { get; }

    /// <summary>Every text in every set, for building the tokenizer's vocabulary (new entities' names included).</summary>
    public IEnumerable<string> AllTexts =>
        PretrainingTexts.Concat(
            new[] { FineTuneTrain, FineTuneEval, FineTuneEvalInDistribution, PretrainEval }
                .SelectMany(set => set)
                .Select(pair => pair.Text));

    private SyntheticWorld(
        WorldOptions options,
        IReadOnlyList<WorldAttribute> attributes,
        IReadOnlyList<WorldEntity> knownEntities,
        IReadOnlyList<WorldEntity> newEntities,
        Random random)
    {
        Options = options;
        Attributes = attributes;
        KnownEntities = knownEntities;
        NewEntities = newEntities;
        PretrainingTexts = BuildPretrainingTexts(random);

        var trainTemplates = Enumerable.Range(0, options.FineTuneQuestionTemplates).ToArray();
        var heldOutTemplates = Enumerable.Range(options.FineTuneQuestionTemplates, WorldAttribute.QuestionTemplateCount - options.FineTuneQuestionTemplates).ToArray();
        FineTuneEvalInDistribution = Questions(newEntities, trainTemplates);
        FineTuneTrain = Shuffled(FineTuneEvalInDistribution, random);
        FineTuneEval = Questions(newEntities, heldOutTemplates);
        PretrainEval = SamplePretrainEval(random);
    }

    public static SyntheticWorld Generate(int seed, WorldOptions? options = null)
    {
        options ??= new WorldOptions();
        options.Validate();
        var random = new Random(seed);
        var attributes = Catalogue
            .Take(options.AttributeCount)
            .Select(attribute => attribute with { Values = attribute.Values.Take(options.ValuesPerAttribute).ToArray() })
            .ToArray();

        var reserved = new HashSet<string>(StringComparer.Ordinal);
        foreach (var attribute in attributes)
        {
            reserved.UnionWith(attribute.Values);
            reserved.UnionWith(attribute.StatementTemplates.Concat(attribute.QuestionTemplates).SelectMany(Words));
        }
        WorldEntity InventEntity() => new(
            InventName(random, reserved),
            attributes.Select(attribute => attribute.Values[random.Next(attribute.Values.Count)]).ToArray());
        var known = Enumerable.Range(0, options.KnownEntityCount).Select(_ => InventEntity()).ToArray();
        var newEntities = Enumerable.Range(0, options.NewEntityCount).Select(_ => InventEntity()).ToArray();
        return new SyntheticWorld(options, attributes, known, newEntities, random);
    }

    /// <summary>
    /// Writes <c>pretrain.jsonl</c> (<c>{"text"}</c> lines) and <c>finetune_train.jsonl</c>, <c>finetune_eval.jsonl</c>,
    /// <c>finetune_eval_in_distribution.jsonl</c>, <c>pretrain_eval.jsonl</c> (<c>{"prompt","response"}</c> lines), each atomically.
    /// </summary>
    public void WriteJsonl(string directory)
    {
        WriteLines(Path.Combine(directory, "pretrain.jsonl"), PretrainingTexts, (json, text) => json.WriteString("text", text));
        void WritePairs(string name, IReadOnlyList<PromptResponse> pairs) =>
            WriteLines(Path.Combine(directory, name), pairs, (json, pair) =>
            {
                json.WriteString("prompt", pair.Prompt);
                json.WriteString("response", pair.Response);
            });
        WritePairs("finetune_train.jsonl", FineTuneTrain);
        WritePairs("finetune_eval.jsonl", FineTuneEval);
        WritePairs("finetune_eval_in_distribution.jsonl", FineTuneEvalInDistribution);
        WritePairs("pretrain_eval.jsonl", PretrainEval);
    }

    /// <summary>Splits a text the way the demo's word-level tokenizer sees it.</summary>
    public static string[] Words(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private static void WriteLines<T>(string path, IEnumerable<T> items, Action<Utf8JsonWriter, T> writeFields) =>
        AtomicFile.Write(path, stream =>
        {
            using var json = new Utf8JsonWriter(stream);
            foreach (var item in items)
            {
                json.WriteStartObject();
                writeFields(json, item);
                json.WriteEndObject();
                json.Flush();
                json.Reset();
                stream.WriteByte((byte)'\n');
            }
        });

    /// <summary>
    /// Per known entity: one biography per statement template (rotating which template states which fact, so every fact
    /// appears in every template) and one question/answer document per fact and question template.
    /// </summary>
    private List<string> BuildPretrainingTexts(Random random)
    {
        var documents = new List<string>();
        foreach (var entity in KnownEntities)
        {
            for (int rotation = 0; rotation < WorldAttribute.StatementTemplateCount; rotation++)
            {
                var order = Shuffled(Enumerable.Range(0, Attributes.Count).ToArray(), random);
                documents.Add(string.Join(" ", order.Select(index =>
                    Attributes[index].State(entity.Name, entity.Values[index], (rotation + index) % WorldAttribute.StatementTemplateCount))));
            }
            for (int index = 0; index < Attributes.Count; index++)
            {
                for (int template = 0; template < WorldAttribute.QuestionTemplateCount; template++)
                {
                    documents.Add(Attributes[index].Ask(entity.Name, template, entity.Values[index]).Text);
                }
            }
        }
        return Shuffled(documents, random);
    }

    private PromptResponse[] Questions(IReadOnlyList<WorldEntity> entities, int[] templates) =>
        entities
            .SelectMany(entity => Attributes.SelectMany((attribute, index) =>
                templates.Select(template => attribute.Ask(entity.Name, template, entity.Values[index]))))
            .ToArray();

    private PromptResponse[] SamplePretrainEval(Random random)
    {
        var all = Questions(KnownEntities, Enumerable.Range(0, WorldAttribute.QuestionTemplateCount).ToArray());
        return Shuffled(all, random).Take(Options.PretrainEvalCount).ToArray();
    }

    private static List<T> Shuffled<T>(IReadOnlyList<T> items, Random random)
    {
        var copy = items.ToList();
        for (int i = copy.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (copy[i], copy[j]) = (copy[j], copy[i]);
        }
        return copy;
    }

    private static readonly string[] Onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"];
    private static readonly string[] Vowels = ["a", "e", "i", "o", "u"];
    private static readonly string[] Codas = ["l", "n", "r", "s"];

    /// <summary>Two or three consonant-vowel syllables, sometimes closed by a consonant; unique and never a template word.</summary>
    private static string InventName(Random random, HashSet<string> taken)
    {
        while (true)
        {
            var name = new StringBuilder();
            int syllables = random.Next(10) < 7 ? 2 : 3;
            for (int i = 0; i < syllables; i++)
            {
                name.Append(Onsets[random.Next(Onsets.Length)]).Append(Vowels[random.Next(Vowels.Length)]);
            }
            if (random.Next(10) < 3)
            {
                name.Append(Codas[random.Next(Codas.Length)]);
            }
            if (taken.Add(name.ToString()))
            {
                return name.ToString();
            }
        }
    }

    /// <summary>
    /// Attributes in the order <see cref="WorldOptions.AttributeCount"/> takes them. Each has 16 single-word values, three
    /// statement templates and four question templates; the question templates mix question shapes (wh-word first, entity
    /// first) so that both the fine-tuning and the held-out templates contain each shape.
    /// </summary>
    private static readonly WorldAttribute[] Catalogue =
    [
        new("city",
            ["paris", "london", "tokyo", "cairo", "lima", "oslo", "rome", "delhi", "berlin", "madrid", "dublin", "sydney", "moscow", "vienna", "prague", "boston"],
            ["{entity} lives in {value} .", "the home town of {entity} is {value} .", "{value} is where {entity} lives ."],
            ["where does {entity} live ?", "{entity} lives in which city ?", "what is the home town of {entity} ?", "in which city does {entity} live ?"]),
        new("job",
            ["baker", "doctor", "farmer", "pilot", "teacher", "painter", "singer", "lawyer", "nurse", "sailor", "tailor", "miner", "writer", "cook", "guard", "driver"],
            ["{entity} works as a {value} .", "the job of {entity} is {value} .", "by trade , {entity} is a {value} ."],
            ["what is the job of {entity} ?", "{entity} works as what ?", "what does {entity} do for a living ?", "which trade does {entity} have ?"]),
        new("color",
            ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray", "gold", "silver", "teal", "violet", "beige"],
            ["the favorite color of {entity} is {value} .", "{entity} likes the color {value} best .", "{value} is the color that {entity} loves ."],
            ["what is the favorite color of {entity} ?", "{entity} loves which color ?", "which color does {entity} like best ?", "what color does {entity} love ?"]),
        new("pet",
            ["cat", "dog", "parrot", "rabbit", "hamster", "turtle", "goldfish", "snake", "horse", "goat", "lizard", "ferret", "pony", "duck", "mouse", "frog"],
            ["{entity} has a pet {value} .", "the pet of {entity} is a {value} .", "{entity} takes care of a {value} ."],
            ["what pet does {entity} have ?", "{entity} owns which animal ?", "what is the pet of {entity} ?", "which animal does {entity} keep ?"]),
        new("food",
            ["bread", "rice", "soup", "cheese", "apples", "pasta", "fish", "salad", "noodles", "beans", "cake", "pizza", "eggs", "honey", "plums", "curry"],
            ["{entity} likes to eat {value} .", "the favorite food of {entity} is {value} .", "{value} is what {entity} eats most ."],
            ["what does {entity} like to eat ?", "{entity} eats which food most ?", "what is the favorite food of {entity} ?", "which food does {entity} enjoy ?"]),
        new("instrument",
            ["piano", "guitar", "violin", "flute", "drums", "harp", "cello", "trumpet", "banjo", "organ", "oboe", "tuba", "lute", "clarinet", "bagpipes", "ukulele"],
            ["{entity} plays the {value} .", "the instrument of {entity} is the {value} .", "{entity} makes music on the {value} ."],
            ["which instrument does {entity} play ?", "{entity} plays which instrument ?", "what is the instrument of {entity} ?", "what does {entity} make music on ?"]),
    ];

    /// <summary>The largest <see cref="WorldOptions.AttributeCount"/> and <see cref="WorldOptions.ValuesPerAttribute"/>.</summary>
    public static (int Attributes, int Values) CatalogueSize => (Catalogue.Length, Catalogue.Min(attribute => attribute.Values.Count));
}

/// <summary>Sizes of a <see cref="SyntheticWorld"/>; the defaults suit a demo of a few minutes on two CPU cores.</summary>
public sealed record WorldOptions
{
    /// <summary>Entities in the pretraining corpus.</summary>
    public int KnownEntityCount { get; init; } = 100;

    /// <summary>Entities taught by fine-tuning; raise it for a knowledge-intensive task (each brings one fact per attribute).</summary>
    public int NewEntityCount { get; init; } = 40;

    public int AttributeCount { get; init; } = 5;

    /// <summary>Values each attribute draws from; guessing scores about 1 / this.</summary>
    public int ValuesPerAttribute { get; init; } = 15;

    /// <summary>Question templates (of four per attribute) used for fine-tuning; the rest are held out for evaluation.</summary>
    public int FineTuneQuestionTemplates { get; init; } = 2;

    /// <summary>Questions about known entities sampled for <see cref="SyntheticWorld.PretrainEval"/>.</summary>
    public int PretrainEvalCount { get; init; } = 200;

    internal void Validate()
    {
        var (maxAttributes, maxValues) = SyntheticWorld.CatalogueSize;
        Check(KnownEntityCount >= 1, nameof(KnownEntityCount), KnownEntityCount, "must be at least 1");
        Check(NewEntityCount >= 1, nameof(NewEntityCount), NewEntityCount, "must be at least 1");
        Check(AttributeCount is >= 1 && AttributeCount <= maxAttributes, nameof(AttributeCount), AttributeCount, $"must be in 1..{maxAttributes}");
        Check(ValuesPerAttribute is >= 2 && ValuesPerAttribute <= maxValues, nameof(ValuesPerAttribute), ValuesPerAttribute, $"must be in 2..{maxValues}");
        Check(FineTuneQuestionTemplates is >= 1 && FineTuneQuestionTemplates < WorldAttribute.QuestionTemplateCount,
            nameof(FineTuneQuestionTemplates), FineTuneQuestionTemplates, $"must be in 1..{WorldAttribute.QuestionTemplateCount - 1} so that some are held out");
        Check(PretrainEvalCount >= 0, nameof(PretrainEvalCount), PretrainEvalCount, "must not be negative");
    }

    private static void Check(bool condition, string name, int value, string problem)
    {
        if (!condition)
        {
            throw new ArgumentOutOfRangeException(name, value, $"WorldOptions.{name} {problem}.");
        }
    }
}

/// <summary>An entity's name and its value for each of <see cref="SyntheticWorld.Attributes"/>, by index.</summary>
public sealed record WorldEntity(string Name, IReadOnlyList<string> Values);

/// <summary>A relation between an entity and one of <see cref="Values"/>, with the phrasings that state and ask it.</summary>
public sealed record WorldAttribute(
    string Name,
    IReadOnlyList<string> Values,
    IReadOnlyList<string> StatementTemplates,
    IReadOnlyList<string> QuestionTemplates)
{
    public const int StatementTemplateCount = 3;
    public const int QuestionTemplateCount = 4;
    private const string EntitySlot = "{entity}";
    private const string ValueSlot = "{value}";

    public string State(string entity, string value, int template) =>
        StatementTemplates[template].Replace(EntitySlot, entity).Replace(ValueSlot, value);

    /// <summary>Prompt "question : ... ? answer :" with <paramref name="answer"/> as the response.</summary>
    public PromptResponse Ask(string entity, int template, string answer) =>
        new($"question : {QuestionTemplates[template].Replace(EntitySlot, entity)} answer :", answer);
}
