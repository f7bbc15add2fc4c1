namespace Engine.Training.Data;

/// <summary>A prompt that ends where the answer starts, and the answer; <see cref="Text"/> is the two as one document.</summary>
public sealed record PromptResponse(string Prompt, string Response)
{
    public string Text => Prompt + " " + Response;
}
