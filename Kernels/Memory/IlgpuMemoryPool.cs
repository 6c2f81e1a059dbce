using System.Numerics;
using ILGPU;
using ILGPU.Runtime;

namespace DiffusionCore.Kernels.Memory;

/// <summary>
/// Caching allocator of device memory for one ILGPU accelerator. Requests are rounded up to a size class
/// (four classes per power of two above <see cref="MinBlockBytes"/>, so at most 25% is wasted) and freed
/// blocks wait in a free list per class: a training step asks for the same sizes every step, so after the first
/// step every request is served from the lists and the device allocator (cudaMalloc, which synchronises the
/// device) is never called again. Blocks are handed out as raw bytes and viewed as float or double.
/// A block returned while a kernel that reads it is still queued is safe to hand out again: every launch of
/// the backend goes to one in-order stream, so the next user's kernels run after it.
/// </summary>
public sealed class IlgpuMemoryPool : IDisposable
{
    /// <summary>Smallest block handed out (also the size of every request up to it): 256 bytes, CUDA's allocation alignment.</summary>
    public const long MinBlockBytes = 256;

    /// <summary>Size classes per doubling of the request size.</summary>
    public const int ClassesPerOctave = 4;

    private readonly Accelerator _accelerator;
    private readonly Dictionary<long, Stack<MemoryBuffer1D<byte, Stride1D.Dense>>> _free = [];
    private readonly Lock _lock = new();
    private long _heldBytes, _pooledBytes, _deviceAllocations;
    private bool _disposed;

    /// <summary>Creates an empty pool over <paramref name="accelerator"/>.</summary>
    public IlgpuMemoryPool(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>Bytes currently allocated from the device (blocks in use and blocks idle in the pool).</summary>
    public long HeldBytes { get { lock (_lock) return _heldBytes; } }

    /// <summary>Bytes idle in the free lists.</summary>
    public long PooledBytes { get { lock (_lock) return _pooledBytes; } }

    /// <summary>Number of device allocations made so far; flat in a steady-state loop.</summary>
    public long DeviceAllocations { get { lock (_lock) return _deviceAllocations; } }

    /// <summary>
    /// The size class of a request of <paramref name="bytes"/>: at least <see cref="MinBlockBytes"/>, otherwise
    /// rounded up to a multiple of 2^(p-2) where 2^p &lt; bytes &lt;= 2^(p+1).
    /// </summary>
    public static long SizeClass(long bytes)
    {
        if (bytes < 0) throw new KernelException("IlgpuMemoryPool", $"negative request of {bytes} bytes");
        if (bytes <= MinBlockBytes) return MinBlockBytes;
        int p = 63 - BitOperations.LeadingZeroCount((ulong)(bytes - 1));
        long step = 1L << (p - BitOperations.Log2(ClassesPerOctave));
        return (bytes + step - 1) / step * step;
    }

    /// <summary>A block of at least <paramref name="bytes"/> bytes (exactly <see cref="SizeClass"/> of it), not zeroed.</summary>
    public MemoryBuffer1D<byte, Stride1D.Dense> Rent(long bytes)
    {
        long size = SizeClass(bytes);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_free.TryGetValue(size, out var stack) && stack.Count > 0)
            {
                _pooledBytes -= size;
                return stack.Pop();
            }
        }
        MemoryBuffer1D<byte, Stride1D.Dense> block;
        try
        {
            block = _accelerator.Allocate1D<byte>(size);
        }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException)
        {
            // Idle blocks of other size classes may be what fills the device: free them and try once more.
            Trim();
            try
            {
                block = _accelerator.Allocate1D<byte>(size);
            }
            catch (Exception again) when (again is OutOfMemoryException or AcceleratorException)
            {
                throw new KernelException("IlgpuMemoryPool", $"cannot allocate {size} bytes on {_accelerator.Name} ({HeldBytes} bytes held by live buffers): {again.Message}");
            }
        }
        lock (_lock)
        {
            _heldBytes += size;
            _deviceAllocations++;
        }
        return block;
    }

    /// <summary>Hands a block obtained from <see cref="Rent"/> back to its free list (freed at once after <see cref="Dispose"/>).</summary>
    public void Return(MemoryBuffer1D<byte, Stride1D.Dense> block)
    {
        lock (_lock)
        {
            if (_disposed)
            {
                _heldBytes -= block.Length;
                block.Dispose();
                return;
            }
            if (!_free.TryGetValue(block.Length, out var stack)) _free.Add(block.Length, stack = new());
            stack.Push(block);
            _pooledBytes += block.Length;
        }
    }

    /// <summary>Frees every idle block back to the device.</summary>
    public void Trim()
    {
        lock (_lock)
        {
            foreach (var stack in _free.Values)
                while (stack.Count > 0)
                {
                    var block = stack.Pop();
                    _heldBytes -= block.Length;
                    _pooledBytes -= block.Length;
                    block.Dispose();
                }
        }
    }

    /// <summary>Frees the idle blocks; blocks still in use are freed when they are returned.</summary>
    public void Dispose()
    {
        Trim();
        lock (_lock) _disposed = true;
    }
}
