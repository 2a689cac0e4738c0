using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>The restore writer's threads: blocks read out of order still land in order, and a fault or a stop ends all of them.</summary>
public sealed class RestoreJobTests
{
    private const int Blocks = 300;

    private static (TestRepository Repo, CheckpointManifest Manifest, byte[] Guest) Setup()
    {
        var t = new TestRepository();
        string image = t.File("disk.raw");
        // Many blocks, some holes between them: enough for every restore thread to take turns many times.
        var writes = Enumerable.Range(0, Blocks).Where(i => i % 7 != 3)
            .Select(i => ((long)i * TestRepository.BlockSize, ImageFiles.Noise(i, TestRepository.BlockSize - (i % 5) * 1000))).ToArray();
        var guest = ImageFiles.CreateRaw(image, (long)Blocks * TestRepository.BlockSize + 4096, writes);
        return (t, t.Checkpoint("vm", image), guest);
    }

    [Theory]
    [InlineData(DiskFormat.Raw)]
    [InlineData(DiskFormat.Qcow2)]
    public void EveryBlockLandsWhereItBelongs(DiskFormat format)
    {
        var (t, m, guest) = Setup();
        using var owner = t;
        var restored = ImageFiles.ReadGuest(t.RestoreFile(m.Id, "disk", format));
        Assert.True(guest.AsSpan().SequenceEqual(restored.AsSpan(0, guest.Length)));
    }

    [Fact]
    public void ADamagedBlockFailsTheRestoreWithItsOwnErrorAndLeavesNoFile()
    {
        var (t, m, _) = Setup();
        using var owner = t;
        string pack = Assert.Single(t.PackFiles());
        var entries = TestRepository.PackEntries(pack);
        var victim = entries.OrderBy(e => e.Offset).ElementAt(entries.Count / 2);
        TestRepository.FlipByte(pack, victim.Offset + 10, 0x40);

        string destination = t.File("restore");
        var e = Assert.Throws<BlockDamagedException>(() => new RestoreJob(t.Repository, null).Run(new RestoreRequest(t.FileOf(m.Id), destination) { Format = DiskFormat.Qcow2 }));
        Assert.Equal(victim.Hash.ToString(), e.Hash);
        Assert.Empty(Directory.GetFiles(destination));
    }

    [Fact]
    public void AStopHalfWayEndsEveryThreadAndLeavesNoFile()
    {
        var (t, m, _) = Setup();
        using var owner = t;
        using var stop = new CancellationTokenSource();
        var reporter = new StopAt(50, stop);
        string destination = t.File("restore");
        Assert.ThrowsAny<OperationCanceledException>(() =>
            new RestoreJob(t.Repository, null, reporter).Run(new RestoreRequest(t.FileOf(m.Id), destination) { Format = DiskFormat.Qcow2 }, stop.Token));
        Assert.InRange(reporter.Highest, 50, 99);
        Assert.Empty(Directory.GetFiles(destination));
    }

    private sealed class StopAt : IJobReporter
    {
        private readonly int _percent;
        private readonly CancellationTokenSource _stop;

        public StopAt(int percent, CancellationTokenSource stop)
        {
            _percent = percent;
            _stop = stop;
        }

        public int Highest { get; private set; }

        public void Progress(string activity, string status, int percent)
        {
            Highest = Math.Max(Highest, percent);
            if (percent >= _percent) _stop.Cancel();
        }

        public void Verbose(string message) { }
        public void Warning(string message) { }
    }
}
