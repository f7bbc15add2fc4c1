using Engine.Autograd;

namespace Engine.Training.Optimization;

public static class GradientClipping
{
    /// <summary>
    /// The global L2 norm of all gradients; when it exceeds <paramref name="maxNorm"/> every gradient is scaled by
    /// maxNorm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_. A non-positive maxNorm only measures.
    /// </summary>
    public static double ClipGlobalNorm(IEnumerable<Parameter> parameters, double maxNorm)
    {
        var gradients = parameters.Where(p => p.Grad is not null).Select(p => p.Grad!).ToList();
        double sumOfSquares = 0;
        foreach (var gradient in gradients)
        {
            using var partial = Tensor.Empty([1], gradient.DType, gradient.Device);
            gradient.Backend.SumOfSquares(gradient, partial);
            sumOfSquares += partial.Item();
        }
        double norm = Math.Sqrt(sumOfSquares);
        double coefficient = maxNorm / (norm + 1e-6);
        if (maxNorm > 0 && coefficient < 1)
        {
            foreach (var gradient in gradients)
            {
                gradient.Backend.Affine(gradient, coefficient, 0, gradient);
            }
        }
        return norm;
    }
}
