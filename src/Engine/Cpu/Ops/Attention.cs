using System.Numerics;
using Engine.Cpu.Kernels;

namespace Engine.Cpu;

/// <summary>Fused causal grouped-query attention (FlashAttention-2 style tiling in Kernels/CausalAttention.cs).</summary>
public sealed unsafe partial class CpuBackend
{
    public void AttentionForward(Tensor query, Tensor key, Tensor value, double scale, Tensor output, Tensor logSumExp)
    {
        var shape = ValidateAttention("attention", query, key, value);
        Check.SameShape("attention", query, output);
        Check.Shape("attention", logSumExp, [shape.Batch, shape.QueryHeads, shape.QueryLength], "log-sum-exp");
        RequireContiguous("attention", output, "output");
        RequireContiguous("attention", logSumExp, "log-sum-exp");
        DispatchFloat("attention", query,
            () => CausalAttention.Forward(Pointer<float>(query), Pointer<float>(key), Pointer<float>(value), Pointer<float>(output), Pointer<float>(logSumExp),
                shape.Batch, shape.QueryHeads, shape.KeyValueHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, (float)scale, Threads),
            () => CausalAttention.Forward(Pointer<double>(query), Pointer<double>(key), Pointer<double>(value), Pointer<double>(output), Pointer<double>(logSumExp),
                shape.Batch, shape.QueryHeads, shape.KeyValueHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, scale, Threads));
    }

    public void AttentionBackward(Tensor query, Tensor key, Tensor value, Tensor output, Tensor logSumExp, Tensor outputGrad, double scale,
        Tensor queryGrad, Tensor keyGrad, Tensor valueGrad)
    {
        var shape = ValidateAttention("attention backward", query, key, value);
        foreach (var (tensor, like, role) in new[] { (output, query, "output"), (outputGrad, query, "output gradient"), (queryGrad, query, "query gradient"), (keyGrad, key, "key gradient"), (valueGrad, value, "value gradient") })
        {
            Check.Compatible("attention backward", like, tensor);
            Check.Shape("attention backward", tensor, like.Shape, role);
            RequireContiguous("attention backward", tensor, role);
        }
        Check.Shape("attention backward", logSumExp, [shape.Batch, shape.QueryHeads, shape.QueryLength], "log-sum-exp");
        DispatchFloat("attention backward", query,
            () => CausalAttention.Backward(Pointer<float>(query), Pointer<float>(key), Pointer<float>(value), Pointer<float>(output), Pointer<float>(logSumExp), Pointer<float>(outputGrad),
                Pointer<float>(queryGrad), Pointer<float>(keyGrad), Pointer<float>(valueGrad),
                shape.Batch, shape.QueryHeads, shape.KeyValueHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, (float)scale, Threads),
            () => CausalAttention.Backward(Pointer<double>(query), Pointer<double>(key), Pointer<double>(value), Pointer<double>(output), Pointer<double>(logSumExp), Pointer<double>(outputGrad),
                Pointer<double>(queryGrad), Pointer<double>(keyGrad), Pointer<double>(valueGrad),
                shape.Batch, shape.QueryHeads, shape.KeyValueHeads, shape.QueryLength, shape.KeyLength, shape.HeadDim, scale, Threads));
    }

    private readonly record struct AttentionShape(int Batch, int QueryHeads, int KeyValueHeads, int QueryLength, int KeyLength, int HeadDim);

    private static AttentionShape ValidateAttention(string operation, Tensor query, Tensor key, Tensor value)
    {
        Check.Compatible(operation, query, key);
        Check.Compatible(operation, query, value);
        Check.Rank(operation, query, 4);
        Check.Rank(operation, key, 4);
        Check.SameShape(operation, key, value);
        RequireContiguous(operation, query, "query");
        RequireContiguous(operation, key, "key");
        RequireContiguous(operation, value, "value");
        int batch = query.Dim(0), queryHeads = query.Dim(1), queryLength = query.Dim(2), headDim = query.Dim(3);
        int keyValueHeads = key.Dim(1), keyLength = key.Dim(2);
        if (key.Dim(0) != batch || key.Dim(3) != headDim || keyValueHeads == 0 || queryHeads % keyValueHeads != 0 || keyLength < queryLength)
        {
            throw new ArgumentException($"{operation}: query {query.Describe()} and key/value {key.Describe()} do not fit: need equal batch and head size, query heads a multiple of key/value heads, and key length >= query length");
        }
        return new AttentionShape(batch, queryHeads, keyValueHeads, queryLength, keyLength, headDim);
    }
}
