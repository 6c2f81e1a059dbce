using DiffusionCore.Kernels.Memory;
using NUnit.Framework;

namespace DiffusionCore.Tests.Kernels;

public sealed class CpuArrayPoolTests
{
    [Test]
    public void InUseAndPeakCountWholeRentedArrays()
    {
        // Requests round up to power-of-two arrays (100 -> 128, 10 -> 16, 5 -> 8), and the statistics count
        // what is really held, recycled arrays included.
        var pool = new CpuArrayPool<float>();
        var large = pool.Rent(100);
        var small = pool.Rent(10);
        Assert.That(pool.InUseElements, Is.EqualTo(144));
        Assert.That(pool.PeakInUseElements, Is.EqualTo(144));

        pool.Return(large);
        Assert.That(pool.InUseElements, Is.EqualTo(16));
        Assert.That(pool.PeakInUseElements, Is.EqualTo(144), "the peak outlives the release");

        pool.ResetPeak();
        Assert.That(pool.PeakInUseElements, Is.EqualTo(16), "a reset starts from what is in use");
        var recycled = pool.Rent(120);
        Assert.That(recycled, Is.SameAs(large), "the returned array is served again");
        Assert.That(pool.InUseElements, Is.EqualTo(144), "a recycled array counts as in use like a fresh one");
        Assert.That(pool.PeakInUseElements, Is.EqualTo(144));
        Assert.That(pool.AllocatedElements, Is.EqualTo(144), "no fresh allocation for the recycled request");

        pool.Return(recycled);
        pool.Return(small);
        Assert.That(pool.InUseElements, Is.Zero);
    }
}
