using DiffusionCore.Kernels;

namespace DiffusionCore.Engine;

/// <summary>
/// A dense, contiguous, row-major array of float32 (or float64) values on a device, with an optional
/// place in the autograd graph. Ops that change layout (permute, slice, pad) copy; reshape and detach
/// share storage. Dispose a tensor (or let a <see cref="TensorScope"/> do it) to return its memory to the pool.
/// </summary>
public sealed partial class Tensor : IDisposable
{
    private readonly int[] _shape;
    private Storage? _storage;

    internal Tensor(Storage storage, int[] shape, DType dtype, Device device)
    {
        _storage = storage;
        _shape = shape;
        DType = dtype;
        Device = device;
        Count = ShapeUtil.Count(shape);
        TensorScope.Register(this);
    }

    /// <summary>Extent of each axis. Do not modify the returned array.</summary>
    public int[] Shape => _shape;

    /// <summary>Number of axes.</summary>
    public int Rank => _shape.Length;

    /// <summary>Number of elements.</summary>
    public long Count { get; }

    /// <summary>Element type.</summary>
    public DType DType { get; }

    /// <summary>The device holding the data.</summary>
    public Device Device { get; }

    /// <summary>Optional name (parameters carry their module path, e.g. "down.0.res.1.conv1.weight").</summary>
    public string? Name { get; set; }

    /// <summary>
    /// True for a leaf whose gradient is wanted (a parameter, or an input of a gradient check).
    /// Results of ops on such tensors are tracked automatically.
    /// </summary>
    public bool RequiresGrad { get; set; }

    /// <summary>Gradient accumulated by <see cref="Backward(Tensor?, bool)"/> into this leaf.</summary>
    public Tensor? Grad { get; set; }

    /// <summary>The op that produced this tensor in the autograd graph, or null for a leaf.</summary>
    internal Node? GradFn { get; set; }

    /// <summary>True when gradients flow through this tensor (a leaf that requires grad, or a tracked op result).</summary>
    public bool TracksGrad => RequiresGrad || GradFn is not null;

    /// <summary>True once the tensor was disposed.</summary>
    public bool IsDisposed => _storage is null;

    internal TensorScope? Scope { get; set; }

    internal Storage Storage => _storage ?? throw new ObjectDisposedException(nameof(Tensor), $"tensor {ShapeUtil.Format(_shape)}{(Name is null ? "" : " '" + Name + "'")} was disposed (by Dispose or by the TensorScope that created it)");

    /// <summary>The backend buffer holding the elements (for kernels and backends).</summary>
    public DeviceBuffer Buffer => Storage.Buffer;

    internal IBackend Backend => Device.Backend;

    /// <summary>Returns the memory to the pool (shared storage is freed with its last user).</summary>
    public void Dispose()
    {
        var s = _storage;
        if (s is null) return;
        _storage = null;
        s.Release();
        GradFn = null;
    }

    /// <summary>Creates a tensor on <paramref name="device"/> with uninitialised (or zeroed) elements.</summary>
    public static Tensor Empty(int[] shape, DType dtype = DType.Float32, Device? device = null, bool zero = false)
    {
        foreach (int d in shape)
            if (d < 0) throw new TensorException("Empty", $"negative extent in shape {ShapeUtil.Format(shape)}");
        device ??= Device.Default;
        var buffer = device.Backend.Allocate(ShapeUtil.Count(shape), dtype, zero);
        return new Tensor(new Storage(buffer), (int[])shape.Clone(), dtype, device);
    }

    /// <summary>A tensor of zeros.</summary>
    public static Tensor Zeros(int[] shape, DType dtype = DType.Float32, Device? device = null) => Empty(shape, dtype, device, zero: true);

    /// <summary>A tensor filled with <paramref name="value"/>.</summary>
    public static Tensor Full(int[] shape, double value, DType dtype = DType.Float32, Device? device = null)
    {
        var t = Empty(shape, dtype, device);
        t.Backend.Fill(t.Buffer, value);
        return t;
    }

    /// <summary>A tensor of ones.</summary>
    public static Tensor Ones(int[] shape, DType dtype = DType.Float32, Device? device = null) => Full(shape, 1.0, dtype, device);

    /// <summary>A rank-0 tensor holding <paramref name="value"/>.</summary>
    public static Tensor Scalar(double value, DType dtype = DType.Float32, Device? device = null) => Full([], value, dtype, device);

    /// <summary>Copies float data into a new float32 tensor of the given shape.</summary>
    public static Tensor FromArray(float[] data, params int[] shape) => FromSpan<float>(data, shape, DType.Float32, null);

    /// <summary>Copies double data into a new float64 tensor of the given shape.</summary>
    public static Tensor FromArray(double[] data, params int[] shape) => FromSpan<double>(data, shape, DType.Float64, null);

    /// <summary>Copies host data into a new tensor of the given shape, dtype and device.</summary>
    public static Tensor FromSpan<T>(ReadOnlySpan<T> data, int[] shape, DType dtype, Device? device) where T : unmanaged
    {
        if (ShapeUtil.Count(shape) != data.Length)
            throw new TensorException("FromArray", $"{data.Length} values do not fill shape {ShapeUtil.Format(shape)} ({ShapeUtil.Count(shape)} elements)");
        var t = Empty(shape, dtype, device);
        t.Backend.Upload(t.Buffer, data);
        return t;
    }

    /// <summary>The elements as float32, in row-major order.</summary>
    public float[] ToArray()
    {
        var r = new float[Count];
        Backend.Download<float>(Buffer, r);
        return r;
    }

    /// <summary>The elements as float64, in row-major order.</summary>
    public double[] ToDoubleArray()
    {
        var r = new double[Count];
        Backend.Download<double>(Buffer, r);
        return r;
    }

    /// <summary>The single value of a one-element tensor (the only host round trip a loop needs).</summary>
    public double Item()
    {
        if (Count != 1) throw new TensorException("Item", $"tensor of shape {ShapeUtil.Format(_shape)} has {Count} elements, not 1");
        Span<double> v = stackalloc double[1];
        Backend.Download(Buffer, v);
        return v[0];
    }

    /// <summary>A new tensor sharing this one's storage, outside the autograd graph.</summary>
    public Tensor Detach() => new(Storage.AddReference(), _shape, DType, Device);

    /// <summary>A new tensor object sharing storage and graph position (used to hand out distinct owners).</summary>
    internal Tensor Alias()
    {
        var t = new Tensor(Storage.AddReference(), _shape, DType, Device) { GradFn = GradFn, RequiresGrad = RequiresGrad };
        return t;
    }

    /// <summary>A copy of the data with its own storage, outside the autograd graph.</summary>
    public Tensor Clone()
    {
        var t = Empty(_shape, DType, Device);
        Backend.Affine(Buffer, t.Buffer, Count, 1.0, 0.0);
        return t;
    }

    /// <summary>Copies this tensor's values into <paramref name="destination"/> (same shape), outside the graph.</summary>
    public void CopyTo(Tensor destination)
    {
        if (!ShapeUtil.Same(_shape, destination.Shape)) throw new TensorException("CopyTo", $"shapes {ShapeUtil.Format(_shape)} and {ShapeUtil.Format(destination.Shape)} differ");
        Backend.Affine(Buffer, destination.Buffer, Count, 1.0, 0.0);
    }

    /// <summary>This tensor converted to <paramref name="dtype"/> (a copy; differentiable).</summary>
    public Tensor To(DType dtype) => Ops.Cast(this, dtype);

    /// <inheritdoc />
    public override string ToString()
    {
        string head = $"Tensor{ShapeUtil.Format(_shape)} {DType} on {Device}";
        if (IsDisposed) return head + " (disposed)";
        var v = ToDoubleArray();
        string body = string.Join(", ", v.Take(8).Select(x => x.ToString("G5")));
        return $"{head} [{body}{(v.Length > 8 ? ", ..." : "")}]";
    }
}
