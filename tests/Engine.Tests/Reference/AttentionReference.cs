namespace Engine.Tests.Reference;

/// <summary>
/// Textbook float64 causal attention with the full score matrix per (batch, head); the oracle for
/// <c>Engine.Cpu.Kernels.CausalAttention</c>. Same layouts and conventions as the kernel:
/// q, o: [batch, qHeads, queryLen, headDim]; k, v: [batch, kvHeads, keyLen, headDim];
/// query head h uses kv head h / (qHeads / kvHeads); query row i sits at position i + keyLen − queryLen
/// and attends keys 0..that position.
/// </summary>
public static class AttentionReference
{
    public static (double[] O, double[] LogSumExp) Forward(double[] q, double[] k, double[] v,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, double scale)
    {
        var o = new double[batch * qHeads * queryLen * headDim];
        var logSumExp = new double[batch * qHeads * queryLen];
        for (int b = 0; b < batch; b++)
        for (int h = 0; h < qHeads; h++)
        {
            var probs = Probabilities(q, k, b, h, qHeads, kvHeads, queryLen, keyLen, headDim, scale, out var lse);
            int kvBase = KvBase(b, h, qHeads, kvHeads, keyLen, headDim);
            for (int i = 0; i < queryLen; i++)
            {
                int row = (b * qHeads + h) * queryLen + i;
                logSumExp[row] = lse[i];
                for (int d = 0; d < headDim; d++)
                {
                    double sum = 0;
                    for (int j = 0; j < keyLen; j++) sum += probs[i, j] * v[kvBase + j * headDim + d];
                    o[row * headDim + d] = sum;
                }
            }
        }
        return (o, logSumExp);
    }

    /// <summary>Gradients of Σ o ∘ dOut with respect to q, k, v.</summary>
    public static (double[] DQ, double[] DK, double[] DV) Backward(double[] q, double[] k, double[] v, double[] dOut,
        int batch, int qHeads, int kvHeads, int queryLen, int keyLen, int headDim, double scale)
    {
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        for (int b = 0; b < batch; b++)
        for (int h = 0; h < qHeads; h++)
        {
            var probs = Probabilities(q, k, b, h, qHeads, kvHeads, queryLen, keyLen, headDim, scale, out _);
            int kvBase = KvBase(b, h, qHeads, kvHeads, keyLen, headDim);
            int qBase = (b * qHeads + h) * queryLen * headDim;

            // dP = dO·vᵀ, then the softmax Jacobian: dS_ij = P_ij (dP_ij − Σ_l P_il dP_il).
            var dScores = new double[queryLen, keyLen];
            for (int i = 0; i < queryLen; i++)
            {
                double weighted = 0;
                for (int j = 0; j < keyLen; j++)
                {
                    double dp = 0;
                    for (int d = 0; d < headDim; d++) dp += dOut[qBase + i * headDim + d] * v[kvBase + j * headDim + d];
                    dScores[i, j] = dp;
                    weighted += probs[i, j] * dp;
                }
                for (int j = 0; j < keyLen; j++) dScores[i, j] = probs[i, j] * (dScores[i, j] - weighted);
            }

            for (int i = 0; i < queryLen; i++)
            for (int j = 0; j < keyLen; j++)
            for (int d = 0; d < headDim; d++)
            {
                dv[kvBase + j * headDim + d] += probs[i, j] * dOut[qBase + i * headDim + d];
                dq[qBase + i * headDim + d] += scale * dScores[i, j] * k[kvBase + j * headDim + d];
                dk[kvBase + j * headDim + d] += scale * dScores[i, j] * q[qBase + i * headDim + d];
            }
        }
        return (dq, dk, dv);
    }

    private static int KvBase(int b, int h, int qHeads, int kvHeads, int keyLen, int headDim)
        => (b * kvHeads + h / (qHeads / kvHeads)) * keyLen * headDim;

    /// <summary>Full queryLen × keyLen softmax matrix of one (batch, head), zero above the causal limit.</summary>
    private static double[,] Probabilities(double[] q, double[] k, int b, int h, int qHeads, int kvHeads,
        int queryLen, int keyLen, int headDim, double scale, out double[] logSumExp)
    {
        int qBase = (b * qHeads + h) * queryLen * headDim;
        int kvBase = KvBase(b, h, qHeads, kvHeads, keyLen, headDim);
        int offset = keyLen - queryLen;
        var scores = new double[queryLen, keyLen];
        logSumExp = new double[queryLen];
        for (int i = 0; i < queryLen; i++)
        {
            int last = i + offset;
            double max = double.NegativeInfinity;
            for (int j = 0; j <= last; j++)
            {
                double s = 0;
                for (int d = 0; d < headDim; d++) s += q[qBase + i * headDim + d] * k[kvBase + j * headDim + d];
                scores[i, j] = scale * s;
                max = Math.Max(max, scores[i, j]);
            }
            double sum = 0;
            for (int j = 0; j <= last; j++) sum += Math.Exp(scores[i, j] - max);
            logSumExp[i] = max + Math.Log(sum);
            for (int j = 0; j < keyLen; j++) scores[i, j] = j <= last ? Math.Exp(scores[i, j] - logSumExp[i]) : 0;
        }
        return scores;
    }
}
