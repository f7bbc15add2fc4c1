using Engine.Training.Data;
using System.Text.Json;
using Engine.Training.Demo;

namespace Engine.Tests.Demo;

public class SyntheticWorldTests
{
    private static readonly SyntheticWorld World = SyntheticWorld.Generate(seed: 1);

    private static IEnumerable<IReadOnlyList<PromptResponse>> AllQuestionSets(SyntheticWorld world) =>
        [world.FineTuneTrain, world.FineTuneEval, world.FineTuneEvalInDistribution, world.PretrainEval];

    [Fact]
    public void SameSeedGivesTheSameWorldAndOtherSeedsDiffer()
    {
        var again = SyntheticWorld.Generate(seed: 1);
        var other = SyntheticWorld.Generate(seed: 2);

        Assert.Equal(World.PretrainingTexts, again.PretrainingTexts);
        Assert.Equal(AllQuestionSets(World).SelectMany(set => set), AllQuestionSets(again).SelectMany(set => set));
        Assert.NotEqual(World.PretrainingTexts, other.PretrainingTexts);
        Assert.NotEqual(World.FineTuneEval, other.FineTuneEval);
    }

    [Fact]
    public void NewEntitiesNeverAppearInPretraining()
    {
        var newNames = World.NewEntities.Select(entity => entity.Name).ToHashSet();
        var pretrainingWords = World.PretrainingTexts.SelectMany(SyntheticWorld.Words).ToHashSet();

        Assert.Empty(newNames.Intersect(World.KnownEntities.Select(entity => entity.Name)));
        Assert.Empty(newNames.Intersect(pretrainingWords));
        Assert.All(World.FineTuneEval.Concat(World.FineTuneTrain), pair => Assert.Contains(NameIn(pair.Prompt, World.NewEntities).Name, newNames));
    }

    [Fact]
    public void HeldOutPhrasingsNeverAppearInFineTuning()
    {
        // A phrasing is a prompt with its entity's name blanked out.
        string Phrasing(PromptResponse pair) => string.Join(" ",
            SyntheticWorld.Words(pair.Prompt).Select(word => word == NameIn(pair.Prompt, World.NewEntities).Name ? "_" : word));
        var trainPhrasings = World.FineTuneTrain.Select(Phrasing).ToHashSet();
        var evalPhrasings = World.FineTuneEval.Select(Phrasing).ToHashSet();

        Assert.Empty(trainPhrasings.Intersect(evalPhrasings));
        Assert.Equal(trainPhrasings, World.FineTuneEvalInDistribution.Select(Phrasing).ToHashSet());
        Assert.Equal(World.Attributes.Count * (WorldAttribute.QuestionTemplateCount - World.Options.FineTuneQuestionTemplates), evalPhrasings.Count);
    }

    [Fact]
    public void EveryAnswerFollowsFromTheWorldsFacts()
    {
        var everyone = World.KnownEntities.Concat(World.NewEntities).ToArray();
        var pretrainingQuestions = World.PretrainingTexts
            .Where(text => text.StartsWith("question :", StringComparison.Ordinal))
            .Select(text => new PromptResponse(text[..(text.LastIndexOf(':') + 1)], text[(text.LastIndexOf(':') + 2)..]));

        Assert.All(AllQuestionSets(World).SelectMany(set => set).Concat(pretrainingQuestions), pair =>
        {
            var entity = NameIn(pair.Prompt, everyone);
            var asked = World.Attributes
                .Select((attribute, index) => (attribute, index))
                .Where(candidate => candidate.attribute.QuestionTemplates.Any(template =>
                    pair.Prompt == $"question : {template.Replace("{entity}", entity.Name)} answer :"))
                .ToArray();
            Assert.Single(asked);
            Assert.Equal(entity.Values[asked[0].index], pair.Response);
        });
    }

    [Fact]
    public void SizesFollowTheOptions()
    {
        var options = new WorldOptions
        {
            KnownEntityCount = 30, NewEntityCount = 7, AttributeCount = 3, ValuesPerAttribute = 5, FineTuneQuestionTemplates = 1, PretrainEvalCount = 20,
        };
        var world = SyntheticWorld.Generate(seed: 3, options);

        Assert.Equal(30, world.KnownEntities.Count);
        Assert.Equal(7, world.NewEntities.Count);
        Assert.Equal(3, world.Attributes.Count);
        Assert.All(world.Attributes, attribute => Assert.Equal(5, attribute.Values.Count));
        Assert.All(world.KnownEntities.Concat(world.NewEntities), entity =>
            Assert.All(entity.Values, (value, index) => Assert.Contains(value, world.Attributes[index].Values)));
        Assert.Equal(30 * (WorldAttribute.StatementTemplateCount + 3 * WorldAttribute.QuestionTemplateCount), world.PretrainingTexts.Count);
        Assert.Equal(7 * 3 * 1, world.FineTuneTrain.Count);
        Assert.Equal(7 * 3 * 1, world.FineTuneEvalInDistribution.Count);
        Assert.Equal(7 * 3 * 3, world.FineTuneEval.Count);
        Assert.Equal(20, world.PretrainEval.Count);
    }

    [Fact]
    public void GuessingTheMostCommonAnswerScoresUnderTwentyPercent()
    {
        string MostCommon(IEnumerable<string> answers) =>
            answers.GroupBy(answer => answer).OrderByDescending(group => group.Count()).ThenBy(group => group.Key, StringComparer.Ordinal).First().Key;
        double Accuracy(Func<PromptResponse, string> guess) => World.FineTuneEval.Count(pair => guess(pair) == pair.Response) / (double)World.FineTuneEval.Count;

        // The single most frequent fine-tuning answer, and each attribute's most frequent value among the known entities
        // (the best a model that knows only the pretraining world can do).
        string overall = MostCommon(World.FineTuneTrain.Select(pair => pair.Response));
        var priorByValue = World.Attributes
            .Select((attribute, index) => MostCommon(World.KnownEntities.Select(entity => entity.Values[index])))
            .SelectMany((guess, index) => World.Attributes[index].Values.Select(value => (value, guess)))
            .ToDictionary(entry => entry.value, entry => entry.guess);

        Assert.InRange(Accuracy(_ => overall), 0, 0.2);
        Assert.InRange(Accuracy(pair => priorByValue[pair.Response]), 0, 0.2);
    }

    [Fact]
    public void WritesJsonlFilesThatReadBackAsTheSets()
    {
        string directory = Path.Combine(Path.GetTempPath(), $"synthetic-world-{Guid.NewGuid():N}");
        try
        {
            World.WriteJsonl(directory);

            var texts = File.ReadAllLines(Path.Combine(directory, "pretrain.jsonl"))
                .Select(line => JsonDocument.Parse(line).RootElement.GetProperty("text").GetString());
            Assert.Equal(World.PretrainingTexts, texts);
            foreach (var (name, pairs) in new[]
            {
                ("finetune_train.jsonl", World.FineTuneTrain), ("finetune_eval.jsonl", World.FineTuneEval),
                ("finetune_eval_in_distribution.jsonl", World.FineTuneEvalInDistribution), ("pretrain_eval.jsonl", World.PretrainEval),
            })
            {
                var read = File.ReadAllLines(Path.Combine(directory, name)).Select(line =>
                {
                    var root = JsonDocument.Parse(line).RootElement;
                    return new PromptResponse(root.GetProperty("prompt").GetString()!, root.GetProperty("response").GetString()!);
                });
                Assert.Equal(pairs, read);
            }
            Assert.Equal(5, Directory.GetFiles(directory).Length);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void RejectsOptionsOutsideTheCatalogue()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Generate(1, new WorldOptions { AttributeCount = 99 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Generate(1, new WorldOptions { FineTuneQuestionTemplates = WorldAttribute.QuestionTemplateCount }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SyntheticWorld.Generate(1, new WorldOptions { NewEntityCount = 0 }));
    }

    /// <summary>The one entity among <paramref name="entities"/> named in <paramref name="prompt"/>.</summary>
    private static WorldEntity NameIn(string prompt, IEnumerable<WorldEntity> entities)
    {
        var words = SyntheticWorld.Words(prompt).ToHashSet();
        return Assert.Single(entities, entity => words.Contains(entity.Name));
    }
}
