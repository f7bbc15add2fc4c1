using Engine.Model;
using Engine.Model.Tokenization;
using Engine.Training.Data;

namespace Engine.Training.Evaluation;

/// <summary>
/// Exact-match accuracy from greedy generation: the prompt (after BOS) is completed until EOS, and the completion's tokens
/// must equal the reference answer's tokens. Comparing ids, not strings, avoids any detokenization ambiguity.
/// </summary>
public static class ExactMatch
{
    public sealed record Result(int Correct, int Total, IReadOnlyList<(PromptResponse Item, string Generated)> Misses)
    {
        public double Accuracy => Total == 0 ? double.NaN : (double)Correct / Total;
    }

    public static Result Evaluate(LlamaModel model, ITextTokenizer tokenizer, IReadOnlyList<PromptResponse> items, int maxMisses = 5)
    {
        int correct = 0;
        var misses = new List<(PromptResponse, string)>();
        foreach (var item in items)
        {
            var prompt = new List<int>();
            if (tokenizer.BosId is { } bos)
            {
                prompt.Add(bos);
            }
            prompt.AddRange(tokenizer.Encode(item.Prompt));
            var expected = tokenizer.Encode(item.Response);
            var options = new SamplingOptions
            {
                MaxNewTokens = expected.Count + 1,
                StopTokens = tokenizer.EosId is { } eos ? [eos] : [],
            };
            var generated = Generation.Generate(model, prompt, options);
            var answer = generated.TakeWhile(token => token != tokenizer.EosId).ToList();
            if (answer.SequenceEqual(expected))
            {
                correct++;
            }
            else if (misses.Count < maxMisses)
            {
                misses.Add((item, tokenizer.Decode(answer)));
            }
        }
        return new Result(correct, items.Count, misses);
    }
}
