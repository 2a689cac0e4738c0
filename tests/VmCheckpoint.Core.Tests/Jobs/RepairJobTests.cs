using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>
/// Repairing the index (restic's repair index): lost, damaged or wrong index files are replaced by one written from the
/// packs' own trailers, under the exclusive lock; packs are only ever read, never deleted.
/// </summary>
public sealed class RepairJobTests
{
    private static string[] Sorted(IEnumerable<string> files) => files.OrderBy(f => f, StringComparer.Ordinal).ToArray();

    private static Dictionary<string, byte[]> PackBytes(TestRepository t) => t.PackFiles().ToDictionary(p => p, File.ReadAllBytes);

    private static void AssertPacksUntouched(Dictionary<string, byte[]> before, TestRepository t)
    {
        Assert.Equal(Sorted(before.Keys), Sorted(t.PackFiles()));
        foreach (var (path, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(path));
    }

    private static void AssertRestores(TestRepository t, Dictionary<string, (string Disk, byte[] Content)> expected)
    {
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));
    }

    [Fact]
    public void AHealthyIndexNeedsNothingAndNothingIsWritten()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        var indexes = Sorted(t.IndexFiles());
        bool asked = false;
        var result = t.Repair(_ => asked = true);
        Assert.False(result.Needed);
        Assert.False(result.Applied);
        Assert.False(asked);
        Assert.Equal(3, result.IndexFilesRead);
        Assert.Equal(3, result.PacksRead);
        Assert.Equal(0, result.IndexesRebuilt);
        Assert.Empty(result.DamagedPacks);
        Assert.Equal(indexes, Sorted(t.IndexFiles()));
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }

    [Fact]
    public void ADamagedIndexIsRebuiltFromThePacksAndVerificationIsHealthyAgain()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        var packs = PackBytes(t);
        string damaged = t.IndexFiles().OrderBy(f => f).First();
        TestRepository.FlipByte(damaged, 40, 0x10);
        Assert.False(t.VerifyAll().Healthy);
        int blobs = t.BlobCount();

        var result = t.Repair();
        Assert.True(result.Needed);
        Assert.True(result.Applied);
        Assert.Equal(new[] { t.Layout.IndexName(RepositoryLayout.IdFromName(damaged)) }, result.DamagedIndexFiles);
        Assert.Equal(1, result.PacksIndexed); // the damaged index's pack, found from its trailer
        Assert.Equal(3, result.PacksRead);
        Assert.Equal(1, result.IndexesRebuilt);
        Assert.Equal(3, result.IndexFilesRemoved);
        Assert.Equal(blobs, result.BlobsIndexed);
        Assert.Equal(0, result.MissingBlocks);
        var index = Assert.Single(t.IndexFiles());
        Assert.Equal(3, IndexFile.Parse(File.ReadAllBytes(index), index).Count);

        var report = t.VerifyAll();
        Assert.True(report.Healthy, string.Join("; ", report.Problems));
        Assert.Empty(report.Notes);
        AssertPacksUntouched(packs, t);
        AssertRestores(t, expected);
        Assert.False(t.Repair().Needed); // once is enough
    }

    [Fact]
    public void LostIndexFilesAreRebuilt()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        foreach (var f in t.IndexFiles()) File.Delete(f);
        var result = t.Repair();
        Assert.True(result.Applied);
        Assert.Equal(0, result.IndexFilesRead);
        Assert.Equal(3, result.PacksIndexed);
        Assert.Single(t.IndexFiles());
        var report = t.VerifyAll();
        Assert.True(report.Healthy);
        Assert.Empty(report.Notes);
        AssertRestores(t, expected);
    }

    [Fact]
    public void IndexEntriesOfPacksThatAreGoneAreDropped()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        // What an interrupted reclaim leaves: an index naming a pack deleted since.
        var ghost = new Dictionary<string, IReadOnlyList<PackEntry>>
        {
            ["0123456789abcdef0123456789abcdef"] = new[] { new PackEntry(default, PackFormat.HeaderSize, 10, 10, BlobCompression.None) },
        };
        File.WriteAllBytes(t.Layout.IndexPath("fedcba9876543210fedcba9876543210"), IndexFile.Serialize(ghost));
        Assert.Contains(t.VerifyAll(readData: false).Notes, n => n.Contains("that are gone"));

        var result = t.Repair();
        Assert.True(result.Applied);
        Assert.Equal(1, result.PacksGone);
        Assert.Empty(t.VerifyAll().Notes);
    }

    [Fact]
    public void WhatIfWritesNothingButSaysWhatItWouldDo()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        File.Delete(t.IndexFiles().OrderBy(f => f).First());
        var before = Sorted(t.IndexFiles());
        RepairResult? plan = null;
        var result = t.Repair(p => { plan = p; return false; });
        Assert.NotNull(plan);
        Assert.True(result.Needed);
        Assert.False(result.Applied);
        Assert.Equal(1, result.PacksIndexed);
        Assert.Contains(result.Actions, a => a.Contains("1 pack(s) no index file listed"));
        Assert.Equal(before, Sorted(t.IndexFiles()));
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }

    [Fact]
    public void APackWithADamagedTrailerIsKeptAndItsBlocksStayIndexedWhereTheyReadBackRight()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        string pack = t.PackFiles().OrderBy(p => p).First();
        var entries = TestRepository.PackEntries(pack);
        long length = new FileInfo(pack).Length;
        TestRepository.FlipByte(pack, length - PackFormat.FooterSize - 7, 0x01); // inside the trailer's entries
        var packs = PackBytes(t);

        var damaged = t.VerifyAll();
        Assert.Contains(damaged.Problems, p => p.ObjectKind == RepositoryObjectKind.Pack && p.Path == pack && p.Message.Contains("trailer"));
        Assert.All(damaged.Checkpoints, c => Assert.Equal(VerificationStatus.Healthy, c.State)); // the index still finds every block

        // Nothing about the index is wrong: the repair has nothing to write, and says what it found.
        var result = t.Repair();
        Assert.False(result.Needed);
        var note = Assert.Single(result.DamagedPacks);
        Assert.Contains($"{entries.Count} of {entries.Count} blobs", note);
        AssertPacksUntouched(packs, t);

        // Its index lost too, nothing says where its blocks are: they are missing, and the pack still stays.
        File.Delete(t.IndexFiles().Single(i => IndexFile.Parse(File.ReadAllBytes(i), i).ContainsKey(RepositoryLayout.IdFromName(pack))));
        var lost = t.Repair();
        Assert.False(lost.Needed); // the other index files are right, and nothing can be said of this pack
        Assert.Contains("no index file lists it", Assert.Single(lost.DamagedPacks));
        Assert.True(lost.MissingBlocks > 0);
        Assert.NotEmpty(lost.DamagedCheckpoints);
        AssertPacksUntouched(packs, t);
    }

    [Fact]
    public void ItTakesTheExclusiveLockAndIsLoggedInTheJobLog()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        using (RepositoryLock.Acquire(t.Layout, LockKind.Shared, TimeSpan.Zero, CancellationToken.None))
            Assert.Throws<RepositoryLockedException>(() => new RepairJob(t.Repository, catalog) { LockWait = TimeSpan.Zero }.Run());
        File.Delete(t.IndexFiles()[0]);
        var result = new RepairJob(t.Repository, catalog) { LockWait = TimeSpan.Zero }.Run();
        Assert.True(result.Applied);
        var jobs = catalog.GetJobs(j => j.Kind == "Repair").OrderBy(j => j.Start).ToList();
        Assert.Equal(new[] { JobResult.Failed, JobResult.Succeeded }, jobs.Select(j => j.Outcome));
        Assert.Contains("indexed from their trailers", jobs[1].Message);
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }

    [Fact]
    public void ARepairWhoseNewIndexCannotBeWrittenRemovesNoOldOne()
    {
        using var t = new TestRepository(faults: true);
        string image = t.File("disk.raw");
        var content = ImageFiles.CreateRaw(image, 1 << 20, (0, ImageFiles.Noise(1, 3 * TestRepository.BlockSize)));
        string id = t.Checkpoint("vm", image).Id;
        string damaged = Assert.Single(t.IndexFiles());
        TestRepository.FlipByte(damaged, 20, 0x01);
        t.Faults!.FailPuts = name => name.StartsWith(RepositoryLayout.IndexPrefix, StringComparison.Ordinal);

        Assert.ThrowsAny<IOException>(() => t.Repair());
        Assert.Equal(new[] { damaged }, t.IndexFiles()); // the damaged one stays until a new one is written
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
        Assert.Equal(content, t.Restore(id, "disk"));

        t.Faults.Reset();
        Assert.True(t.Repair().Applied);
        Assert.True(t.VerifyAll().Healthy);
    }
}
