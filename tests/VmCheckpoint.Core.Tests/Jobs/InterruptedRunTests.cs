using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>A run that dies half-way (a disk read fails) must leave the repository as it was, plus reusable packs.</summary>
public sealed class InterruptedRunTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    [Fact]
    public void FailedRunWritesNoManifestKeepsEarlierCheckpointsAndTheNextRunReusesItsSealedPacks()
    {
        using var t = new TestRepository();
        string small = t.File("small.raw");
        var smallContent = ImageFiles.CreateRaw(small, MiB, (0, ImageFiles.Noise(1, 4 * Block)), (MiB - 1, new byte[] { 9 }));
        var m0 = t.Checkpoint("small", small);
        var packsBefore = t.PackFiles().ToHashSet();

        // More than one pack's worth (32 MiB) of incompressible data, so that the failed run seals a pack.
        string big = t.File("big.raw");
        const int dataBlocks = 36 * (int)MiB / Block;
        var bigContent = ImageFiles.CreateRaw(big, 40 * MiB, (0, ImageFiles.Noise(2, dataBlocks * Block)));
        var faulty = new FaultyDiskImage(DiskImage.Open(big), failAfterReads: 35 * (int)MiB / Block);
        using (faulty)
        {
            var e = Assert.Throws<IOException>(() =>
                new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("big", new[] { new DiskSource("big", faulty) })));
            Assert.Contains("injected", e.Message);
        }

        Assert.Equal(new[] { m0.Id }, t.Repository.ListCheckpoints().Select(f => f.Id));
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
        Assert.Empty(Directory.GetFiles(t.Layout.PacksDirectory, "*.tmp", SearchOption.AllDirectories)); // the open pack was discarded
        string sealedPack = Assert.Single(t.PackFiles(), p => !packsBefore.Contains(p));
        int sealedBlobs;
        using (var s = File.OpenRead(sealedPack)) sealedBlobs = PackFormat.ReadTrailer(s, sealedPack).Count;
        Assert.InRange(sealedBlobs, 32 * (int)MiB / Block - 1, 35 * (int)MiB / Block);

        // What a killed process leaves behind: temporary files everywhere. They must not be taken for anything.
        string vmDir = t.Layout.VmDirectory("small");
        File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(sealedPack)!, "0123456789abcdef0123456789abcdef.pack.a1b2c3.tmp"), ImageFiles.Noise(3, 5000));
        File.WriteAllBytes(Path.Combine(t.Layout.IndexDirectory, "0123456789abcdef0123456789abcdef.idx.a1b2c3.tmp"), ImageFiles.Noise(4, 500));
        File.WriteAllText(Path.Combine(vmDir, "20990101T000000000Z_0123456789abcdef.json.a1b2c3.tmp"), "{\"format\":1");

        Assert.Equal(new[] { m0.Id }, t.Repository.ListCheckpoints().Select(f => f.Id));
        var verdict = Assert.Single(t.Verify(readData: true));
        Assert.Equal(VerificationStatus.Healthy, verdict.State);
        Assert.Equal(smallContent, t.Restore(m0.Id, "small"));

        var m1 = t.Checkpoint("big", big);
        Assert.Null(m1.ParentId);
        Assert.Equal((long)(dataBlocks - sealedBlobs) * Block, m1.Statistics.NewBytes);
        Assert.Equal((long)dataBlocks * Block, m1.Statistics.ReadBytes);
        Assert.Equal(bigContent, t.Restore(m1.Id, "big"));
        Assert.All(t.Verify(readData: true), r => Assert.Equal(VerificationStatus.Healthy, r.State));
    }

    [Fact]
    public void RunFailingOnItsFirstReadLeavesNothingBehind()
    {
        using var t = new TestRepository();
        string path = t.File("d.raw");
        ImageFiles.CreateRaw(path, MiB, (0, ImageFiles.Noise(1, 16 * Block)));
        var faulty = new FaultyDiskImage(DiskImage.Open(path), failAfterReads: 0);
        using (faulty)
        {
            var e = Assert.Throws<IOException>(() =>
                new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("vm", new[] { new DiskSource("d", faulty) })));
            Assert.Contains("injected read failure at offset 0", e.Message);
        }
        Assert.Empty(t.Repository.ListCheckpoints());
        Assert.Empty(t.PackFiles());
        Assert.Equal(0, t.BlobCount());
    }
}
