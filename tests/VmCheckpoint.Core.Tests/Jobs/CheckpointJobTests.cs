using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

public sealed class CheckpointJobTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    [Fact]
    public void OddSizedSparseRawRoundTripsAndZeroBlocksAreNotStored()
    {
        using var t = new TestRepository();
        string path = t.File("odd.raw");
        long size = 3 * MiB + 777; // the last block is partial and not a multiple of 512
        var source = ImageFiles.CreateRaw(path, size,
            (0, new byte[] { 0xA1 }),
            (Block + 10, ImageFiles.Noise(1, 3000)),          // inside block 1
            (20 * Block, new byte[Block]),                     // written but all zero: allocated, not stored
            (size - 1, new byte[] { 0x5E }));                  // the very last byte, in the partial block

        var m = t.Checkpoint("vm", path);

        Assert.Null(m.ParentId);
        var disk = Assert.Single(m.Disks);
        Assert.Equal("odd", disk.Name);
        Assert.Equal(size, disk.VirtualSize);
        Assert.Equal(new long[] { 0, 1, size / Block }, Enumerable.Range(0, disk.Blocks.Count).Select(disk.Blocks.IndexAt));
        Assert.Equal(3, t.BlobCount());
        Assert.Equal(2 * Block + (size % Block), m.Statistics.NewBytes);
        Assert.Equal(m.Statistics.NewBytes, m.Statistics.ChangedBytes);
        Assert.Equal(source, t.Restore(m.Id, "odd", DiskFormat.Raw));

        // qcow2 holds whole sectors only: like qemu-img convert, the restore pads the tail with zeros.
        string destination = t.File("q");
        var restored = Assert.Single(new RestoreJob(t.Repository, null).Run(new RestoreRequest(t.FileOf(m.Id), destination) { Format = DiskFormat.Qcow2 }));
        Assert.Equal((size + 511) / 512 * 512, restored.VirtualSize);
        using (var image = DiskImage.Open(restored.Path))
        {
            var bytes = new byte[image.VirtualSize];
            image.Read(0, bytes, 0, bytes.Length);
            Assert.Equal(source, bytes.Take((int)size).ToArray());
            Assert.All(bytes.Skip((int)size), b => Assert.Equal(0, b));
        }
    }

    [Fact]
    public void SecondCheckpointStoresOnlyChangedBlocksAndBothRestore()
    {
        using var t = new TestRepository();
        string path = t.File("disk.raw");
        long size = 4 * MiB;
        var first = ImageFiles.CreateRaw(path, size,
            (0, ImageFiles.Noise(1, 8 * Block)),
            (size - 100, ImageFiles.Noise(2, 100)));
        var m1 = t.Checkpoint("vm", path);
        int blobs1 = t.BlobCount();
        Assert.Equal(9, blobs1);

        var second = ImageFiles.Patch(path, (2 * Block + 5, ImageFiles.Noise(3, 10)), (size - 1, new byte[] { 0x77 }));
        var m2 = t.Checkpoint("vm", path);

        Assert.Equal(m1.Id, m2.ParentId);
        Assert.Equal(2L * Block, m2.Statistics.ChangedBytes);
        Assert.Equal(2L * Block, m2.Statistics.NewBytes);
        Assert.Equal(9L * Block, m2.Statistics.ReadBytes);
        Assert.Equal(blobs1 + 2, t.BlobCount());

        Assert.Equal(second, t.Restore(m2.Id, "disk", DiskFormat.Raw));
        Assert.Equal(first, t.Restore(m1.Id, "disk", DiskFormat.Raw));

        string qcow2 = t.RestoreFile(m2.Id, "disk", DiskFormat.Qcow2);
        Assert.Equal(second, ImageFiles.ReadGuest(qcow2));
        var compare = Qemu.Compare(path, "raw", qcow2, "qcow2");
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
    }

    [Fact]
    public void BlockThatBecameAHoleCountsAsChanged()
    {
        // A trimmed block is no longer among the data extents, so it is not read; it still changed (to zero).
        using var t = new TestRepository();
        string path = t.File("disk.raw");
        var data = ImageFiles.Noise(1, 6 * Block);
        ImageFiles.CreateRaw(path, MiB, (0, data));
        var m1 = t.Checkpoint("vm", path);
        File.Delete(path);
        var now = ImageFiles.CreateRaw(path, MiB, (0, data.AsSpan(0, 4 * Block).ToArray()), (5 * Block, data.AsSpan(5 * Block).ToArray()));

        var m2 = t.Checkpoint("vm", path);
        Assert.Equal(m1.Id, m2.ParentId);
        Assert.Equal(5L * Block, m2.Statistics.ReadBytes);
        Assert.Equal(1L * Block, m2.Statistics.ChangedBytes);
        Assert.Equal(0, m2.Statistics.NewBytes);
        Assert.Equal(5, m2.Disks[0].Blocks.Count);
        Assert.Equal(now, t.Restore(m2.Id, "disk"));
    }

    [Fact]
    public void ChangedExtentsReadOnlyTheirBlocksAndTakeTheRestFromTheParent()
    {
        using var t = new TestRepository();
        string path = t.File("vda.raw");
        long size = 2 * MiB;
        ImageFiles.CreateRaw(path, size, (0, ImageFiles.Noise(1, 24 * Block)));
        var m1 = t.Checkpoint("live", path);

        // What the guest wrote since: part of block 3, blocks 10-11 (one range across the boundary), block 20 zeroed.
        var now = ImageFiles.Patch(path,
            (3 * Block + 100, ImageFiles.Noise(2, 50)),
            (10 * Block + Block / 2, ImageFiles.Noise(3, Block)),
            (20 * Block, new byte[Block]));
        var changed = new[]
        {
            new DiskExtent(3 * Block + 100, 50),
            new DiskExtent(10 * Block + Block / 2, Block),
            new DiskExtent(20 * Block, Block),
        };
        var image = new FaultyDiskImage(DiskImage.Open(path));
        CheckpointManifest m2;
        using (image)
            m2 = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("live", new[] { new DiskSource("vda", image, changed) }) { ChangesSince = m1.Id });

        Assert.Equal(4L * Block, image.BytesRead);
        Assert.Equal(new long[] { 3 * Block, 10 * Block, 11 * Block, 20 * Block }, image.ReadOffsets.OrderBy(o => o));
        Assert.Equal(4L * Block, m2.Statistics.ReadBytes);
        Assert.Equal(4L * Block, m2.Statistics.ChangedBytes);
        Assert.Equal(3L * Block, m2.Statistics.NewBytes);
        Assert.Equal(m1.Id, m2.ParentId);
        Assert.Equal(23, m2.Disks[0].Blocks.Count);
        Assert.Null(m2.Disks[0].Blocks.Find(20));
        Assert.Equal(now, t.Restore(m2.Id, "vda"));
    }

    [Fact]
    public void ChangedExtentsRelativeToAnOlderCheckpointAreNotTrusted()
    {
        // The ranges were tracked since m1, but m2 (taken meanwhile by another process or host, perhaps of another
        // copy of the disk) is now the parent: the ranges say nothing about m2, so every data block is read instead.
        using var t = new TestRepository();
        string path = t.File("vda.raw");
        ImageFiles.CreateRaw(path, 1 * MiB, (0, ImageFiles.Noise(1, 16 * Block)));
        var original = ImageFiles.Noise(1, 16 * Block);
        var m1 = t.Checkpoint("live", path);
        ImageFiles.Patch(path, (5 * Block, ImageFiles.Noise(2, Block)));
        t.Checkpoint("live", path);
        // Since m1 only block 7 differs (block 5 is back as it was): true of m1, false of m2, whose block 5 is other.
        var now = ImageFiles.Patch(path, (5 * Block, original.AsSpan(5 * Block, Block).ToArray()), (7 * Block, ImageFiles.Noise(3, Block)));
        var image = new FaultyDiskImage(DiskImage.Open(path));
        CheckpointManifest m3;
        using (image)
            m3 = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("live", new[] { new DiskSource("vda", image, new[] { new DiskExtent(7 * Block, Block) }) }) { ChangesSince = m1.Id });

        Assert.Equal(16L * Block, image.BytesRead);
        Assert.Equal(now, t.Restore(m3.Id, "vda"));
    }

    [Fact]
    public void AParentBlockThatIsAHoleNowIsReadWhateverTheChangesSay()
    {
        // A disk shrunk and grown back (or trimmed by a writer that tracks nothing) loses data that no change records.
        using var t = new TestRepository();
        string path = t.File("vda.raw");
        ImageFiles.CreateRaw(path, 1 * MiB, (0, ImageFiles.Noise(1, 16 * Block)));
        var m1 = t.Checkpoint("live", path);
        Qemu.Ok("fallocate", "--punch-hole", "--offset", (6 * Block).ToString(), "--length", Block.ToString(), path);
        var now = File.ReadAllBytes(path);
        var image = new FaultyDiskImage(DiskImage.Open(path));
        CheckpointManifest m2;
        using (image)
            m2 = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("live", new[] { new DiskSource("vda", image, new DiskExtent[0]) }) { ChangesSince = m1.Id });

        Assert.Equal(new long[] { 6 * Block }, image.ReadOffsets);
        Assert.Null(m2.Disks[0].Blocks.Find(6));
        Assert.Equal(now, t.Restore(m2.Id, "vda"));
    }

    [Fact]
    public void ChangedExtentsOfADiskThatChangedSizeAreNotTrusted()
    {
        using var t = new TestRepository();
        string path = t.File("vda.raw");
        ImageFiles.CreateRaw(path, 1 * MiB, (0, ImageFiles.Noise(1, 16 * Block)));
        var m1 = t.Checkpoint("live", path);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(2 * MiB);
        var now = ImageFiles.Patch(path, (3 * Block, ImageFiles.Noise(4, Block)));
        var image = new FaultyDiskImage(DiskImage.Open(path));
        CheckpointManifest m2;
        using (image)
            m2 = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("live", new[] { new DiskSource("vda", image, new DiskExtent[0]) }) { ChangesSince = m1.Id });

        Assert.Equal(16L * Block, image.BytesRead);
        Assert.Equal(now, t.Restore(m2.Id, "vda"));
    }

    [Fact]
    public void ChangedExtentsWithoutAParentReadTheWholeDisk()
    {
        // Changed ranges are relative to a parent; with no parent they say nothing about the other blocks.
        using var t = new TestRepository();
        string path = t.File("vda.raw");
        var content = ImageFiles.CreateRaw(path, 1 * MiB, (0, ImageFiles.Noise(1, 16 * Block)));
        var image = new FaultyDiskImage(DiskImage.Open(path));
        CheckpointManifest m;
        using (image)
            m = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("live", new[] { new DiskSource("vda", image, new[] { new DiskExtent(0, Block) }) }));

        Assert.Equal(16, m.Disks[0].Blocks.Count);
        Assert.Equal(content, t.Restore(m.Id, "vda"));
    }

    [Fact]
    public void IdenticalContentIsStoredOnceAcrossDisksAndVms()
    {
        using var t = new TestRepository();
        var data = ImageFiles.Noise(7, 6 * Block);
        string a = t.File("a.raw"), b = t.File("b.raw"), c = t.File("c.raw");
        var content = ImageFiles.CreateRaw(a, 2 * MiB, (0, data), (MiB, data)); // the same 6 blocks twice in one disk
        ImageFiles.CreateRaw(b, 2 * MiB, (0, data), (MiB, data));
        ImageFiles.CreateRaw(c, 1 * MiB, (Block, data));

        var m1 = t.Checkpoint("vm1", a, b);
        Assert.Equal(6, t.BlobCount());
        Assert.Equal(6L * Block, m1.Statistics.NewBytes);
        Assert.Equal(24L * Block, m1.Statistics.ReadBytes);

        var m2 = t.Checkpoint("vm2", c);
        Assert.Null(m2.ParentId);
        Assert.Equal(0, m2.Statistics.NewBytes);
        Assert.Equal(0, m2.Statistics.StoredBytes);
        Assert.Equal(6L * Block, m2.Statistics.ChangedBytes); // no parent: everything is a change
        Assert.Equal(6, t.BlobCount());
        Assert.Single(t.PackFiles());

        Assert.Equal(content, t.Restore(m1.Id, "b"));
        Assert.Equal(File.ReadAllBytes(c), t.Restore(m2.Id, "c"));
    }

    [Fact]
    public void TwoRunsAtOnceOnTheSameFolderBothSucceed()
    {
        using var t = new TestRepository();
        var shared = ImageFiles.Noise(1, 8 * Block);
        string a = t.File("a.raw"), b = t.File("b.raw");
        var contentA = ImageFiles.CreateRaw(a, 2 * MiB, (0, shared), (MiB, ImageFiles.Noise(2, 8 * Block)));
        var contentB = ImageFiles.CreateRaw(b, 2 * MiB, (0, shared), (MiB, ImageFiles.Noise(3, 8 * Block)));

        using var start = new Barrier(2);
        CheckpointManifest RunOn(string vm, string image)
        {
            var repository = CheckpointRepository.Open(t.Repository.Path);
            var disks = ImageFileSource.OpenDiskFiles(new[] { image });
            try
            {
                start.SignalAndWait();
                return new CheckpointJob(repository, null).Run(new CheckpointRequest(vm, disks));
            }
            finally
            {
                disks[0].Image.Dispose();
            }
        }
        var results = new CheckpointManifest?[2];
        var errors = new Exception?[2];
        var threads = new[] { ("vm-a", a), ("vm-b", b) }.Select((job, i) => new Thread(() =>
        {
            try { results[i] = RunOn(job.Item1, job.Item2); }
            catch (Exception e) { errors[i] = e; }
        })).ToList();
        threads.ForEach(th => th.Start());
        Assert.All(threads, th => Assert.True(th.Join(TimeSpan.FromSeconds(60))));
        Assert.Equal(new Exception?[2], errors);

        Assert.Equal(contentA, t.Restore(results[0]!.Id, "a"));
        Assert.Equal(contentB, t.Restore(results[1]!.Id, "b"));
        Assert.All(t.Verify(readData: true), r => Assert.Equal(VerificationStatus.Healthy, r.State));
        Assert.Equal(24, t.BlobCount()); // duplicates of the shared blocks may exist in two packs, but name 24 blobs
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }
}
