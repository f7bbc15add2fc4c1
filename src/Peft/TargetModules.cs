using System.Globalization;
using System.Text.RegularExpressions;
using Engine.Model;

namespace Engine.Peft;

/// <summary>
/// Which linear layers an adapter wraps, with peft's matching rules: a list of names matches a module whose full path equals
/// a name or ends with "." + name (so "q_proj" matches every layer's query projection, "layers.0.self_attn.q_proj" one of
/// them); a regular expression must match the whole path; "all-linear" is every linear layer except the LM head (which the
/// model never exposes as a linear layer). <see cref="Layers"/> optionally restricts matches to some decoder layers
/// (peft's layers_to_transform).
/// </summary>
public sealed partial class TargetModules
{
    public const string AllLinearName = "all-linear";

    private TargetModules(IReadOnlyList<string>? names, string? pattern, IReadOnlyList<int>? layers)
    {
        Names = names;
        Pattern = pattern;
        Layers = layers;
    }

    /// <summary>The listed names (suffix match), or null when a pattern or all-linear selects.</summary>
    public IReadOnlyList<string>? Names { get; }

    /// <summary>The whole-path regular expression, or null.</summary>
    public string? Pattern { get; }

    public bool IsAllLinear => Names is null && Pattern is null;

    /// <summary>Decoder-layer indices to adapt (null: all layers).</summary>
    public IReadOnlyList<int>? Layers { get; }

    public static TargetModules AllLinear { get; } = new(null, null, null);

    public static TargetModules FromNames(params IEnumerable<string> names)
    {
        var list = names.Select(name => name.Trim()).Where(name => name.Length > 0).Distinct().ToList();
        if (list.Count == 0)
        {
            throw new ArgumentException("target modules: the list of module names is empty");
        }
        return list.Count == 1 && list[0] == AllLinearName ? AllLinear : new TargetModules(list, null, null);
    }

    public static TargetModules FromPattern(string pattern)
    {
        try
        {
            _ = new Regex(pattern);
        }
        catch (ArgumentException error)
        {
            throw new ArgumentException($"target modules: '{pattern}' is not a valid regular expression: {error.Message}");
        }
        return new TargetModules(null, pattern, null);
    }

    /// <summary>
    /// Parses a command-line value: "all-linear", a comma-separated list of names, or "regex:PATTERN".
    /// </summary>
    public static TargetModules Parse(string text) =>
        text.StartsWith("regex:", StringComparison.Ordinal) ? FromPattern(text["regex:".Length..]) : FromNames(text.Split(','));

    /// <summary>Restricts to some decoder layers. peft refuses layers_to_transform with a regex (the regex decides alone), so this does too.</summary>
    public TargetModules WithLayers(IReadOnlyList<int>? layers) => layers is not null && Pattern is not null
        ? throw new ArgumentException($"target modules: a layer restriction cannot be combined with the regex '{Pattern}' (peft refuses it too); put the layers in the regex")
        : new(Names, Pattern, layers is null ? null : layers.Distinct().Order().ToList());

    /// <summary>
    /// The module paths of <paramref name="model"/> this selects, in model order. Every listed name must match at least one
    /// module and the selection must not be empty: a typo is an error that names it and the model's module names.
    /// </summary>
    public IReadOnlyList<string> Resolve(LlamaModel model)
    {
        var available = model.LinearLayers.Select(layer => layer.Name).ToList();
        foreach (int layer in Layers ?? [])
        {
            if (layer < 0 || layer >= model.Config.NumHiddenLayers)
            {
                throw new ArgumentException($"target modules: layer {layer} does not exist; the model has layers 0..{model.Config.NumHiddenLayers - 1}");
            }
        }
        var inLayers = available.Where(name => Layers is null || Layers.Contains(LayerIndex(name))).ToList();
        List<string> selected;
        if (Names is not null)
        {
            foreach (var name in Names)
            {
                if (!available.Any(module => Matches(module, name)))
                {
                    string kinds = string.Join(", ", available.Select(module => module[(module.LastIndexOf('.') + 1)..]).Distinct());
                    throw new ArgumentException($"target modules: '{name}' matches no linear layer of the model; its linear layers are named " +
                        $"{kinds} (e.g. '{available[0]}')");
                }
            }
            selected = inLayers.Where(module => Names.Any(name => Matches(module, name))).ToList();
        }
        else if (Pattern is not null)
        {
            var regex = new Regex($"^(?:{Pattern})$");
            selected = inLayers.Where(module => regex.IsMatch(module)).ToList();
        }
        else
        {
            selected = inLayers;
        }
        if (selected.Count == 0)
        {
            throw new ArgumentException($"target modules: {this} selects no linear layer of the model (e.g. '{available[0]}')");
        }
        return selected;
    }

    /// <summary>The decoder-layer index in a path "model.layers.{i}...", or -1.</summary>
    public static int LayerIndex(string modulePath)
    {
        var match = LayerIndexPattern().Match(modulePath);
        return match.Success ? int.Parse(match.Groups[1].ValueSpan, CultureInfo.InvariantCulture) : -1;
    }

    private static bool Matches(string module, string name) => module == name || module.EndsWith("." + name, StringComparison.Ordinal);

    public override string ToString()
    {
        string selection = Names is not null ? string.Join(",", Names) : Pattern is not null ? $"regex:{Pattern}" : AllLinearName;
        return Layers is null ? selection : $"{selection} (layers {string.Join(",", Layers)})";
    }

    [GeneratedRegex(@"(?:^|\.)layers\.(\d+)\.")]
    private static partial Regex LayerIndexPattern();
}
