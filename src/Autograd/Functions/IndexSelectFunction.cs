namespace Engine.Autograd.Functions;

/// <summary>Row gather along axis 0 (embedding lookup); backward is a deterministic scatter-add into the table's gradient.</summary>
internal sealed class IndexSelectFunction : Function
{
    private Tensor? indices;
    private int[] tableShape = [];

    public override string Name => "IndexSelect";

    public static Variable Apply(Variable table, Tensor indices)
    {
        using var packedTable = table.Data.Contiguous();
        using var flatIndices = indices.Reshape(-1);
        var rowShape = packedTable.ShapeArray();
        rowShape[0] = (int)flatIndices.ElementCount;
        var rows = Tensor.Empty(rowShape, table.DType, table.Device);
        rows.Backend.IndexSelect(packedTable, flatIndices, rows);
        var function = new IndexSelectFunction { tableShape = packedTable.ShapeArray() };
        function.indices = function.Save(flatIndices);
        // Output shape: indices' shape followed by the table's row shape.
        using (rows)
        {
            return function.Finish(rows.Reshape([.. indices.Shape, .. packedTable.Shape[1..]]), table);
        }
    }

    protected internal override Tensor?[] Backward(Tensor outputGrad, bool[] needsGrad)
    {
        var tableGrad = Tensor.Zeros(tableShape, outputGrad.DType, outputGrad.Device);
        using var rows = outputGrad.Reshape([(int)indices!.ElementCount, .. tableShape[1..]]);
        tableGrad.Backend.IndexAdd(tableGrad, indices, rows);
        return [tableGrad];
    }
}
