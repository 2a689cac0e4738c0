using System.Security.Cryptography;
using System.Text.Json;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>
/// Checkpoints of qcow2 files with change tracking: qemu-img adds a persistent bitmap, qemu-io's writes land in it as
/// a guest's would, and the next checkpoint reads only those blocks, yet restores equal to the file (qemu-img compare).
/// </summary>
public sealed class ImageFileSessionTests
{
    private const long KiB = 1024, MiB = 1024 * KiB;
    private const long Block = TestRepository.BlockSize;

    private static string NewImage(TestRepository t, string name = "vda.qcow2")
    {
        string path = t.File(name);
        Qemu.CreateQcow2(path, "", "32M");
        Qemu.Io(path, "qcow2", "write -P 0x41 0 2M", "write -P 0x42 8M 1M", "write -P 0x43 31M 1M");
        return path;
    }

    /// <summary>How a test checkpoints files: read everything, or keep change tracking off.</summary>
    private sealed class ImageFilePlan
    {
        public bool Full { get; init; }
        public bool ChangeTracking { get; init; } = true;
    }

    /// <summary>Image files checkpointed as the module does: an <see cref="ImageFileSource"/> through <see cref="VmCheckpointJob"/>.</summary>
    private static CheckpointManifest Checkpoint(TestRepository t, string vm, string[] paths, ImageFilePlan? plan = null, CancellationToken token = default)
    {
        plan ??= new ImageFilePlan();
        var source = new ImageFileSource(paths, new ImageFileOptions { ChangeTracking = plan.ChangeTracking });
        return new VmCheckpointJob(t.Repository, null, source).Run(vm, new CheckpointPlan { Full = plan.Full }, token);
    }

    private static CheckpointManifest Run(TestRepository t, string path, ImageFilePlan? plan = null, CancellationToken token = default, string vm = "vm") =>
        Checkpoint(t, vm, new[] { path }, plan, token);

    private static List<string> Bitmaps(string path)
    {
        using var doc = JsonDocument.Parse(Qemu.Ok("qemu-img", "info", "-U", "--output=json", path));
        var data = doc.RootElement.GetProperty("format-specific").GetProperty("data");
        if (!data.TryGetProperty("bitmaps", out var bitmaps)) return new List<string>();
        return bitmaps.EnumerateArray().Select(b => b.GetProperty("name").GetString()!).ToList();
    }

    /// <summary>The bitmap a checkpoint left in a disk's file.</summary>
    private static string BitmapOf(CheckpointManifest m, string disk = "vda") => ImageFileSource.DiskBitmap(m.ChangeTrackingId!, disk);

    private static void AssertRestoresEqual(TestRepository t, CheckpointManifest m, string copy)
    {
        string restored = t.RestoreFile(m.Id, "vda", DiskFormat.Qcow2);
        var r = Qemu.Compare(restored, "qcow2", copy, "qcow2");
        Assert.True(r.ExitCode == 0, $"qemu-img compare: {r.Stdout} {r.Stderr}");
    }

    private static string Snapshot(TestRepository t, string path, string tag)
    {
        string copy = t.File($"copy-{tag}.qcow2");
        Qemu.Img("convert", "-U", "-O", "qcow2", path, copy);
        return copy;
    }

    [Fact]
    public void TheNextCheckpointReadsOnlyTheBlocksWrittenSince()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        var m1 = Run(t, path);
        Assert.Equal(4 * MiB, m1.Statistics.ReadBytes);
        Assert.Equal(new[] { BitmapOf(m1) }, Bitmaps(path));
        Assert.StartsWith(ImageFileSource.VmPrefix("vm"), m1.ChangeTrackingId);
        string copy1 = Snapshot(t, path, "1");

        Qemu.Io(path, "qcow2", "write -P 0x51 1M 4k", "write -P 0x52 20M 100k", "write -z 8M 64k");
        string copy2 = Snapshot(t, path, "2");
        var m2 = Run(t, path);

        // One block at 1M, two at 20M (100 KiB from a block boundary spans two 64 KiB blocks), one zeroed at 8M.
        Assert.Equal(4 * Block, m2.Statistics.ReadBytes);
        Assert.Equal(m1.Id, m2.ParentId);
        Assert.Equal(new[] { BitmapOf(m2) }, Bitmaps(path));   // the old bitmap is gone, the new one in
        Assert.Null(m2.Note);
        AssertRestoresEqual(t, m1, copy1);
        AssertRestoresEqual(t, m2, copy2);
        Assert.Equal(0, Qemu.Run("qemu-img", "check", path).ExitCode);
    }

    [Fact]
    public void AFailedRunTakesItsBitmapAwayAndTheNextIsStillIncremental()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        var m1 = Run(t, path);
        Qemu.Io(path, "qcow2", "write -P 0x61 3M 64k");

        using (var cancelled = new CancellationTokenSource())
        {
            cancelled.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => Run(t, path, token: cancelled.Token));
        }
        Assert.Equal(new[] { BitmapOf(m1) }, Bitmaps(path));

        string copy = Snapshot(t, path, "2");
        var m2 = Run(t, path);
        Assert.Equal(Block, m2.Statistics.ReadBytes);
        AssertRestoresEqual(t, m2, copy);
    }

    [Fact]
    public void ABitmapLeftByAKilledRunIsRemovedByTheNextGoodOne()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        var m1 = Run(t, path);
        // What a run killed between adding its bitmap and storing its manifest leaves behind.
        Qemu.Img("bitmap", "--add", "-f", "qcow2", path, ImageFileSource.DiskBitmap(ImageFileSource.VmPrefix("vm") + "0123456789abcdef", "vda"));
        Qemu.Img("bitmap", "--add", "-f", "qcow2", path, "someone-elses");
        Qemu.Io(path, "qcow2", "write -P 0x71 5M 64k");

        var m2 = Run(t, path);

        Assert.Equal(Block, m2.Statistics.ReadBytes);
        Assert.Equal(new[] { "someone-elses", BitmapOf(m2) }.OrderBy(x => x), Bitmaps(path).OrderBy(x => x));
    }

    [Fact]
    public void WithoutATrustworthyBitmapEveryDataBlockIsReadAndTheReasonNoted()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        var m1 = Run(t, path);
        Qemu.Img("bitmap", "--remove", "-f", "qcow2", path, BitmapOf(m1));
        Qemu.Io(path, "qcow2", "write -P 0x81 9M 64k");
        string copy = Snapshot(t, path, "2");

        var m2 = Run(t, path);

        Assert.Equal(4 * MiB + Block, m2.Statistics.ReadBytes);   // all data, the new block at 9M included
        Assert.Equal(Block, m2.Statistics.ChangedBytes);
        Assert.Contains("gone", m2.Note);
        Assert.Equal(new[] { BitmapOf(m2) }, Bitmaps(path));
        AssertRestoresEqual(t, m2, copy);
    }

    [Fact]
    public void QemuRefusesToRevertAnInternalSnapshotWhileTheBitmapIsThere()
    {
        // A revert changes the disk without writing it, so no bitmap would see it: the guarantee that this cannot
        // happen under a bitmap is qemu's ("Device has active dirty bitmaps"), checked here on the qemu in use.
        using var t = new TestRepository();
        string path = NewImage(t);
        Qemu.Img("snapshot", "-c", "before", path);
        var m1 = Run(t, path);
        Qemu.Io(path, "qcow2", "write -P 0x55 0 64k");
        var revert = Qemu.Run("qemu-img", "snapshot", "-a", "before", path);
        Assert.True(revert.ExitCode != 0, $"the revert went through: no bitmap was kept ({m1.ChangeTrackingId}; {m1.Note})");
        Assert.Contains("dirty bitmap", revert.Stderr);
        string copy = Snapshot(t, path, "2");
        var m2 = Run(t, path);
        Assert.Equal(Block, m2.Statistics.ReadBytes);
        AssertRestoresEqual(t, m2, copy);
    }

    [Fact]
    public void AFileCopiedOverAnotherDiskIsReadWhole()
    {
        // vdb's file copied over vda's carries vdb's bitmap: it must not pass for a record of vda's changes.
        using var t = new TestRepository();
        string vda = NewImage(t, "vda.qcow2");
        string vdb = t.File("vdb.qcow2");
        Qemu.CreateQcow2(vdb, "", "32M");
        Qemu.Io(vdb, "qcow2", "write -P 0x61 4M 1M");
        Checkpoint(t, "two", new[] { vda, vdb });
        File.Copy(vdb, vda, overwrite: true);
        Qemu.Io(vdb, "qcow2", "write -P 0x62 4M 64k");
        string copyA = Snapshot(t, vda, "a"), copyB = Snapshot(t, vdb, "b");

        var m2 = Checkpoint(t, "two", new[] { vda, vdb });

        Assert.Equal(MiB + Block, m2.Statistics.ReadBytes);   // vda: all its (1 MiB of) data; vdb: the one block written
        Assert.Contains("vda: every data block is read", m2.Note);
        foreach (var (disk, copy) in new[] { ("vda", copyA), ("vdb", copyB) })
        {
            string restored = t.RestoreFile(m2.Id, disk, DiskFormat.Qcow2);
            Assert.Equal(0, Qemu.Compare(restored, "qcow2", copy, "qcow2").ExitCode);
        }
    }

    [Fact]
    public void TwoVmNamesOnOneFileKeepTheirOwnBitmaps()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        var a1 = Run(t, path, vm: "alpha");
        Run(t, path, vm: "beta");
        Assert.Equal(2, Bitmaps(path).Count);
        Qemu.Io(path, "qcow2", "write -P 0x71 6M 64k");
        var a2 = Run(t, path, vm: "alpha");
        Assert.Equal(Block, a2.Statistics.ReadBytes);
        Assert.DoesNotContain(BitmapOf(a1), Bitmaps(path));
        Assert.Equal(2, Bitmaps(path).Count);
    }

    [Fact]
    public void ADiskShrunkAndGrownBackReadsWhatItLost()
    {
        // qemu truncates bitmaps with the disk and grows them back clean: no bit says the tail is now zeros.
        using var t = new TestRepository();
        string path = NewImage(t);   // data at 0-2M, 8M and 31M
        Run(t, path);
        Qemu.Img("resize", "-f", "qcow2", "--shrink", path, "16M");
        Qemu.Img("resize", "-f", "qcow2", path, "32M");
        string copy = Snapshot(t, path, "2");

        var m2 = Run(t, path);

        Assert.Equal(MiB, m2.Statistics.ReadBytes);   // the 31M block, a hole now
        Assert.Equal(3 * MiB, m2.Disks[0].Blocks.Count * Block);
        AssertRestoresEqual(t, m2, copy);
    }

    [Fact]
    public void AnImageWithABitmapInUseGetsNoBitmapOfOurs()
    {
        // Another program's bitmap marked in use: a VM (on another host, or without image locking) may have the file open.
        using var t = new TestRepository();
        string path = NewImage(t);
        Qemu.Img("bitmap", "--add", "-f", "qcow2", path, "theirs");
        byte[] head = new byte[4096];
        using (var f = File.OpenRead(path)) f.ReadExactly(head);
        using (var image = (VmCheckpoint.Core.Disks.Qcow2.Qcow2Image)DiskImage.Open(path))
        {
            long entry = image.Header.BitmapDirectoryOffset;
            HeaderPatch.SetUInt32(path, entry + VmCheckpoint.Core.Disks.Qcow2.Qcow2Format.BitmapEntryFlags,
                VmCheckpoint.Core.Disks.Qcow2.Qcow2Format.BitmapFlagInUse | VmCheckpoint.Core.Disks.Qcow2.Qcow2Format.BitmapFlagAuto);
        }
        var m = Run(t, path);
        Assert.Null(m.ChangeTrackingId);
        Assert.Contains("in use", m.Note);
        Assert.Equal(new[] { "theirs" }, Bitmaps(path));
    }

    [Fact]
    public void AResizedDiskIsReadWhole()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        Run(t, path);
        Qemu.Img("resize", "-f", "qcow2", path, "40M");
        Qemu.Io(path, "qcow2", "write -P 0x91 39M 64k");
        string copy = Snapshot(t, path, "2");

        var m2 = Run(t, path);

        Assert.Equal(4 * MiB + Block, m2.Statistics.ReadBytes);
        Assert.Contains("size changed", m2.Note);
        AssertRestoresEqual(t, m2, copy);
    }

    [Fact]
    public void FullReadsEverythingButStillTracksForTheNextRun()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        Run(t, path);
        Qemu.Io(path, "qcow2", "write -P 0xa1 1M 4k");
        var m2 = Run(t, path, new ImageFilePlan { Full = true });
        Assert.Equal(4 * MiB, m2.Statistics.ReadBytes);
        Qemu.Io(path, "qcow2", "write -P 0xa2 1M 4k");
        var m3 = Run(t, path);
        Assert.Equal(Block, m3.Statistics.ReadBytes);
    }

    [Fact]
    public void WithoutChangeTrackingTheFileIsOnlyRead()
    {
        using var t = new TestRepository();
        string path = NewImage(t);
        byte[] before = SHA256.HashData(File.ReadAllBytes(path));
        var m1 = Run(t, path, new ImageFilePlan { ChangeTracking = false });
        var m2 = Run(t, path, new ImageFilePlan { ChangeTracking = false });
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(path)));
        Assert.Empty(Bitmaps(path));
        Assert.Null(m1.ChangeTrackingId);
        Assert.Equal(4 * MiB, m2.Statistics.ReadBytes);
    }

    [Fact]
    public void RawFilesAndVersion2ImagesAreReadWholeAndLeftUntouched()
    {
        using var t = new TestRepository();
        string v2 = t.File("vda.qcow2");
        Qemu.CreateQcow2(v2, "compat=0.10", "8M");
        Qemu.Io(v2, "qcow2", "write -P 0x11 0 1M");
        byte[] before = SHA256.HashData(File.ReadAllBytes(v2));
        var m = Run(t, v2);
        Assert.Contains("version 2", m.Note);
        Assert.Null(m.ChangeTrackingId);
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(v2)));

        string raw = t.File("raw.img");
        ImageFiles.CreateRaw(raw, 4 * MiB, (0, ImageFiles.Noise(3, (int)MiB)));
        byte[] rawBefore = SHA256.HashData(File.ReadAllBytes(raw));
        var r = Run(t, raw, vm: "rawvm");
        Assert.Null(r.ChangeTrackingId);
        Assert.Equal(rawBefore, SHA256.HashData(File.ReadAllBytes(raw)));
    }

    [Fact]
    public void ACorruptImageAmongTheDisksChangesNoFile()
    {
        using var t = new TestRepository();
        string good = NewImage(t);
        string bad = t.File("vdb.qcow2");
        Qemu.CreateQcow2(bad, "", "8M");
        HeaderPatch.SetUInt32(bad, Qcow2FormatOffsets.Version, 7);
        byte[] goodBefore = SHA256.HashData(File.ReadAllBytes(good));

        Assert.Throws<CorruptImageException>(() =>
            Checkpoint(t, "vm", new[] { good, bad }));

        Assert.Equal(goodBefore, SHA256.HashData(File.ReadAllBytes(good)));
        Assert.Empty(t.Repository.ListCheckpoints("vm"));
    }

    [Fact]
    public void AnImageAProgramHoldsOpenForWritingIsRefusedAndLeftAlone()
    {
        // A file being written is not a stopped disk: it is refused (ResourceBusy) before anything is written anywhere.
        using var t = new TestRepository();
        string path = NewImage(t);
        using var holder = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("qemu-io", $"-f qcow2 {path}")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        })!;
        try
        {
            holder.StandardInput.WriteLine("write -P 0x33 0 4k");
            holder.StandardInput.Flush();
            WaitForLock(path);
            var e = Assert.Throws<DiskInUseException>(() => Run(t, path));
            Assert.Equal(holder.Id, e.User.ProcessId);
            Assert.True(e.User.Writing);
            Assert.Contains(path, e.Message);
            Assert.Contains("qemu-io", e.Message);
            Assert.Empty(t.Repository.ListCheckpoints());
            Assert.Empty(Bitmaps(path));
        }
        finally
        {
            // A holder that is gone already (killed, or quit on its own) must not hide what the test found.
            try { holder.StandardInput.WriteLine("quit"); } catch (IOException) { }
            holder.WaitForExit(10_000);
            if (!holder.HasExited) holder.Kill();
        }
    }

    private static void WaitForLock(string path)
    {
        for (int i = 0; i < 100; i++)
        {
            if (Qemu.Run("qemu-img", "info", path).ExitCode != 0) return; // locked
            Thread.Sleep(50);
        }
        throw new Xunit.Sdk.XunitException("qemu-io never took the image lock");
    }

    private static class Qcow2FormatOffsets
    {
        public const long Version = VmCheckpoint.Core.Disks.Qcow2.Qcow2Format.VersionOffset;
    }
}
