using System.Collections.Concurrent;
using System.Numerics;

namespace DiffusionCore.Kernels.Memory;

/// <summary>
/// Pool of managed arrays in power-of-two buckets. A training step asks for the same sizes every
/// step, so after the first step every request is served from the pool and nothing new is allocated.
/// </summary>
public sealed class CpuArrayPool<T> where T : unmanaged
{
    private readonly ConcurrentBag<T[]>[] _buckets = Enumerable.Range(0, 63).Select(_ => new ConcurrentBag<T[]>()).ToArray();
    private long _pooledElements;
    private long _allocatedElements;
    private long _inUseElements;
    private long _peakInUseElements;

    /// <summary>Elements currently held idle in the pool.</summary>
    public long PooledElements => Interlocked.Read(ref _pooledElements);

    /// <summary>Elements ever allocated fresh (a steady-state training step adds none).</summary>
    public long AllocatedElements => Interlocked.Read(ref _allocatedElements);

    /// <summary>
    /// Elements rented and not yet returned (whole arrays, so rounded up to the power-of-two buckets): the live
    /// working set. Unlike <see cref="GC.GetAllocatedBytesForCurrentThread"/>, which counts only fresh allocations,
    /// this sees the memory a computation holds when the pool recycles its buffers. An array never returned (a buffer
    /// left to the garbage collector) stays counted, so measure the difference across a computation.
    /// </summary>
    public long InUseElements => Interlocked.Read(ref _inUseElements);

    /// <summary>The largest <see cref="InUseElements"/> since the pool was made or <see cref="ResetPeak"/> was called.</summary>
    public long PeakInUseElements => Interlocked.Read(ref _peakInUseElements);

    /// <summary>Starts a new peak measurement from the current <see cref="InUseElements"/>.</summary>
    public void ResetPeak() => Interlocked.Exchange(ref _peakInUseElements, InUseElements);

    /// <summary>Rents an array of at least <paramref name="length"/> elements.</summary>
    public T[] Rent(long length)
    {
        if (length > Array.MaxLength) throw new KernelException("Allocate", $"{length} elements exceed the largest managed array ({Array.MaxLength})");
        int bucket = BucketOf(length);
        if (_buckets[bucket].TryTake(out var array))
        {
            Interlocked.Add(ref _pooledElements, -array.LongLength);
        }
        else
        {
            long size = Math.Min(1L << bucket, Array.MaxLength);
            Interlocked.Add(ref _allocatedElements, size);
            array = GC.AllocateUninitializedArray<T>((int)Math.Max(size, 1));
        }
        long inUse = Interlocked.Add(ref _inUseElements, array.LongLength);
        // A lock-free maximum: retry while another thread raised the peak between the read and the exchange.
        long peak;
        while (inUse > (peak = Interlocked.Read(ref _peakInUseElements))
               && Interlocked.CompareExchange(ref _peakInUseElements, inUse, peak) != peak)
        {
        }
        return array;
    }

    /// <summary>Returns an array obtained from <see cref="Rent"/>.</summary>
    public void Return(T[] array)
    {
        Interlocked.Add(ref _inUseElements, -array.LongLength);
        Interlocked.Add(ref _pooledElements, array.LongLength);
        _buckets[BucketOf(array.LongLength)].Add(array);
    }

    /// <summary>Drops every idle array so the garbage collector can take it.</summary>
    public void Trim()
    {
        foreach (var bucket in _buckets) bucket.Clear();
        Interlocked.Exchange(ref _pooledElements, 0);
    }

    private static int BucketOf(long length) => length <= 1 ? 0 : 64 - BitOperations.LeadingZeroCount((ulong)(length - 1));
}
