using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

public sealed class SequentialClusterBufferTests
{
    private const int Cluster = 4096;

    /// <summary>
    /// Ascending writes of random sizes and alignments, some of them zero, some whole clusters: what the sink receives,
    /// laid out at its clusters, is the disk written, every cluster holding data handed over once, no zero cluster at all.
    /// </summary>
    [Theory]
    [InlineData(1, 1_000_003L)]   // a short last cluster
    [InlineData(2, 1_048_576L)]
    [InlineData(3, 409_600L)]
    public void SinkSeesEveryDataClusterOnceAndNothingElse(int seed, long virtualSize)
    {
        var random = new Random(seed);
        var expected = new byte[virtualSize];
        var seen = new byte[(virtualSize + Cluster - 1) / Cluster * Cluster];
        var handed = new int[seen.Length / Cluster];
        int runs = 0, longestRun = 0;
        using var buffer = new SequentialClusterBuffer(Cluster, virtualSize, (first, clusters, data, index) =>
        {
            Assert.True(clusters > 0);
            runs++;
            longestRun = Math.Max(longestRun, clusters);
            for (int c = 0; c < clusters; c++)
            {
                handed[first + c]++;
                Array.Copy(data, index + c * Cluster, seen, (first + c) * Cluster, Cluster);
            }
        });

        long offset = 0;
        while (offset < virtualSize)
        {
            long end = offset;
            offset += random.Next(3) == 0 ? random.Next(0, 5 * Cluster) : 0; // a gap (a hole)
            if (random.Next(4) == 0 && offset - offset % Cluster >= end) offset -= offset % Cluster; // aligned now and then
            if (offset >= virtualSize) break;
            int count = (int)Math.Min(virtualSize - offset, random.Next(4) switch
            {
                0 => random.Next(1, Cluster),               // a piece of a cluster
                1 => Cluster * random.Next(1, 20),          // whole clusters, if aligned
                2 => random.Next(Cluster, 40 * Cluster),    // anything
                _ => 64 * Cluster,
            });
            var data = new byte[count + 7];
            int start = random.Next(8);
            if (random.Next(5) != 0) random.NextBytes(data.AsSpan(start, count));
            if (random.Next(3) == 0 && count > Cluster) Array.Clear(data, start + Cluster / 2, Cluster * 3 / 2); // a zero cluster inside
            buffer.Write(offset, data, start, count);
            Array.Copy(data, start, expected, offset, count);
            offset += count;
        }
        buffer.Flush();

        for (int c = 0; c < handed.Length; c++)
        {
            int length = (int)Math.Min(Cluster, virtualSize - (long)c * Cluster);
            bool hasData = expected.AsSpan(c * Cluster, length).IndexOfAnyExcept((byte)0) >= 0;
            Assert.True(handed[c] == (hasData ? 1 : 0), $"cluster {c} handed over {handed[c]} times, holds data: {hasData}");
        }
        Assert.True(expected.AsSpan().SequenceEqual(seen.AsSpan(0, (int)virtualSize)));
        Assert.True(seen.AsSpan((int)virtualSize).IndexOfAnyExcept((byte)0) < 0, "bytes past the disk's end must be zero");
        Assert.True(longestRun > 1, $"whole clusters were handed over one at a time ({runs} runs)");
    }

    [Fact]
    public void AWholeWriteIsHandedOverAsOneRunFromTheCallersBuffer()
    {
        var calls = new List<(long First, int Clusters, byte[] Data, int Index)>();
        using var buffer = new SequentialClusterBuffer(Cluster, 64 * Cluster, (f, n, d, i) => calls.Add((f, n, d, i)));
        var data = new byte[16 * Cluster + 3];
        new Random(5).NextBytes(data);
        buffer.Write(8 * Cluster, data, 3, 16 * Cluster);
        var call = Assert.Single(calls);
        Assert.Equal((8L, 16, 3), (call.First, call.Clusters, call.Index));
        Assert.Same(data, call.Data);
    }
}
