using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>Packs describe themselves; index files only speed up finding blobs and may be lost or damaged.</summary>
public sealed class BlockStoreTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    private static (TestRepository Repo, CheckpointManifest Manifest, byte[] Content) Setup()
    {
        var t = new TestRepository();
        string path = t.File("disk.raw");
        var content = ImageFiles.CreateRaw(path, 2 * MiB, (0, ImageFiles.Noise(1, 6 * Block)), (MiB, ImageFiles.Noise(2, 3 * Block)));
        return (t, t.Checkpoint("vm", path), content);
    }

    private static HashSet<BlockHash> KnownBlobs(TestRepository t)
    {
        using var store = t.Repository.OpenStore(CancellationToken.None);
        return store.PackContents.Values.SelectMany(v => v).Select(e => e.Hash).ToHashSet();
    }

    [Fact]
    public void WithoutIndexFilesEveryBlobIsFoundFromThePackTrailers()
    {
        var (t, m, content) = Setup();
        using var owner = t;
        var before = KnownBlobs(t);
        Assert.Equal(9, before.Count);
        var indexes = Directory.GetFiles(t.Layout.IndexDirectory, "*.idx");
        Assert.Single(indexes);
        foreach (var f in indexes) File.Delete(f);

        using (var store = t.Repository.OpenStore(CancellationToken.None))
        {
            Assert.Empty(store.IndexFiles);
            Assert.Equal(9, store.Count);
            var table = m.Disks[0].Blocks;
            for (int i = 0; i < table.Count; i++) Assert.True(store.TryGetLocation(table.HashAt(i), out _));
        }
        Assert.Equal(before, KnownBlobs(t));
        Assert.Equal(content, t.Restore(m.Id, "disk"));

        // The next run sees the blocks as present and stores nothing again.
        var again = t.Checkpoint("other", t.File("disk.raw"));
        Assert.Equal(0, again.Statistics.NewBytes);
    }

    [Fact]
    public void DamagedIndexFileIsIgnored()
    {
        var (t, m, content) = Setup();
        using var owner = t;
        string index = Assert.Single(Directory.GetFiles(t.Layout.IndexDirectory, "*.idx"));
        var bytes = File.ReadAllBytes(index);
        for (int i = 20; i < 40; i++) bytes[i] ^= 0xFF;
        File.WriteAllBytes(index, bytes);

        using (var store = t.Repository.OpenStore(CancellationToken.None))
        {
            Assert.Empty(store.IndexFiles);
            Assert.Equal(9, store.Count);
        }
        Assert.Throws<InvalidDataException>(() => IndexFile.Parse(bytes, index));
        Assert.Equal(content, t.Restore(m.Id, "disk"));
        Assert.Equal(VerificationStatus.Healthy, Assert.Single(t.Verify(readData: true)).State);
        // Ignored for reading, never silently: verification reports the index file itself.
        Assert.Equal(RepositoryObjectKind.Index, Assert.Single(t.VerifyAll(readData: false).Problems).ObjectKind);

        File.WriteAllBytes(index, Array.Empty<byte>()); // truncated to nothing
        Assert.Equal(content, t.Restore(m.Id, "disk"));
    }

    [Fact]
    public void DamagedPackByteIsFoundByReadingDataOnly()
    {
        var (t, m, _) = Setup();
        using var owner = t;
        string pack = Assert.Single(t.PackFiles());
        var entries = TestRepository.PackEntries(pack);
        var victim = Assert.Single(entries, e => e.Offset == PackFormat.HeaderSize);
        TestRepository.FlipByte(pack, PackFormat.HeaderSize + 100, 0x01);

        using (var store = t.Repository.OpenStore(CancellationToken.None))
        using (var reader = new BlockReader(store, t.Layout))
        {
            var buffer = new byte[Block];
            var e = Assert.Throws<BlockDamagedException>(() => reader.Read(victim.Hash, buffer));
            Assert.Equal(victim.Hash.ToString(), e.Hash);
            var healthy = entries.First(x => x.Hash != victim.Hash);
            Assert.Equal(Block, reader.Read(healthy.Hash, buffer));
        }

        var quick = Assert.Single(t.Verify(readData: false));
        Assert.Equal(VerificationStatus.Healthy, quick.State);
        Assert.False(quick.DataRead);

        var full = Assert.Single(t.Verify(readData: true));
        Assert.Equal(VerificationStatus.Damaged, full.State);
        Assert.Equal(new[] { "disk" }, full.DamagedDisks);
        Assert.Equal(1, full.CorruptBlocks);
        Assert.Equal(0, full.MissingBlocks);
        Assert.Equal(9, full.BlocksChecked);
        Assert.Contains(full.Problems, p => p.Contains("Disk disk") && p.Contains("corrupt"));

        // A restore refuses to hand out the damaged block and leaves no file behind.
        string destination = t.File("restore");
        Assert.Throws<BlockDamagedException>(() => new RestoreJob(t.Repository, null).Run(new RestoreRequest(t.FileOf(m.Id), destination) { Format = DiskFormat.Raw }));
        Assert.Empty(Directory.GetFiles(destination));
    }

    [Fact]
    public void MissingPackIsDamageWithoutReadingData()
    {
        var (t, m, _) = Setup();
        using var owner = t;
        string packOfFirst = Assert.Single(t.PackFiles());
        string other = t.File("other.raw");
        var otherContent = ImageFiles.CreateRaw(other, MiB, (0, ImageFiles.Noise(9, 2 * Block)));
        var m2 = t.Checkpoint("vm2", other);
        File.Delete(packOfFirst);

        var results = t.Verify(readData: false).ToDictionary(r => r.Id);
        var bad = results[m.Id];
        Assert.Equal(VerificationStatus.Damaged, bad.State);
        Assert.Equal(9, bad.MissingBlocks);
        Assert.Equal(0, bad.CorruptBlocks);
        Assert.Equal(new[] { "disk" }, bad.DamagedDisks);
        Assert.All(bad.Problems, p => Assert.Contains("missing", p));
        Assert.Equal(VerificationStatus.Healthy, results[m2.Id].State);
        Assert.Equal(otherContent, t.Restore(m2.Id, "other"));
        Assert.ThrowsAny<IOException>(() => t.Restore(m.Id, "disk"));
    }
}
