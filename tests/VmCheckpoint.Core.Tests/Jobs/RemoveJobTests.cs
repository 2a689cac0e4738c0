using System.Text;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>Removing checkpoints and reclaiming their blocks: the one operation that deletes data.</summary>
public sealed class RemoveJobTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    /// <summary>
    /// vm-a: one checkpoint of 8 blocks (its own pack). vm-b: a checkpoint of 4 blocks, then one with 2 of them
    /// changed (a pack of 2). vm-c shares 2 blocks with vm-a. vm-d: 3 blocks of its own.
    /// </summary>
    private sealed class Scene : IDisposable
    {
        public readonly TestRepository T = new();
        public readonly CheckpointManifest A1, B1, B2, C1, D1;
        public readonly byte[] B2Content, C1Content;

        public Scene()
        {
            string a = T.File("a.raw"), b = T.File("b.raw"), c = T.File("c.raw");
            var aData = ImageFiles.Noise(1, 8 * Block);
            ImageFiles.CreateRaw(a, MiB, (0, aData));
            A1 = T.Checkpoint("vm-a", a);
            ImageFiles.CreateRaw(b, MiB, (0, ImageFiles.Noise(2, 4 * Block)));
            B1 = T.Checkpoint("vm-b", b);
            B2Content = ImageFiles.Patch(b, (0, ImageFiles.Noise(3, 2 * Block)));
            B2 = T.Checkpoint("vm-b", b);
            C1Content = ImageFiles.CreateRaw(c, MiB, (4 * Block, aData.AsSpan(0, 2 * Block).ToArray()));
            C1 = T.Checkpoint("vm-c", c);
            string d = T.File("d.raw");
            ImageFiles.CreateRaw(d, MiB, (MiB - 3 * Block, ImageFiles.Noise(4, 3 * Block)));
            D1 = T.Checkpoint("vm-d", d);
        }

        public void Dispose() => T.Dispose();
    }

    [Fact]
    public void ReclaimDeletesUnusedPacksRewritesMostlyUnusedOnesAndKeepsEverythingElseWhole()
    {
        using var s = new Scene();
        var t = s.T;
        Assert.Equal(4, t.PackFiles().Length);
        Assert.Equal(17, t.BlobCount());
        long bytesBefore = t.PackBytes();

        var job = new RemoveJob(t.Repository, null) { LockWait = TimeSpan.FromSeconds(5) };
        var result = job.Run(new[] { t.FileOf(s.A1.Id), t.FileOf(s.B1.Id), t.FileOf(s.D1.Id) }, reclaim: true);

        Assert.Equal(new[] { s.A1.Id, s.B1.Id, s.D1.Id }, result.RemovedIds);
        var r = result.Reclaim!;
        Assert.True(r.Completed);
        // vm-d's pack is unused: deleted. vm-a's keeps 2 of 8 blocks (vm-c's) and vm-b's first keeps 2 of 4: rewritten.
        Assert.Equal(1, r.PacksDeleted);
        Assert.Equal(2, r.PacksRewritten);
        Assert.Equal(3 + 6 + 2, r.BlocksRemoved);
        Assert.Equal(6, t.BlobCount());
        long bytesAfter = t.PackBytes();
        Assert.True(bytesAfter < bytesBefore - 10 * Block, $"{bytesBefore} -> {bytesAfter}");
        Assert.Equal(bytesBefore - bytesAfter, r.BytesReclaimed);
        Assert.Single(Directory.GetFiles(t.Layout.IndexDirectory, "*.idx"));

        Assert.Equal(new[] { s.B2.Id, s.C1.Id }.OrderBy(x => x), t.Repository.ListCheckpoints().Select(f => f.Id).OrderBy(x => x));
        Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
        Assert.Equal(s.B2Content, t.Restore(s.B2.Id, "b"));
        Assert.Equal(s.C1Content, t.Restore(s.C1.Id, "c"));

        // The live blocks were copied into one new pack: removing vm-c leaves it half used, rewritten again.
        var second = job.Run(new[] { t.FileOf(s.C1.Id) }, reclaim: true).Reclaim!;
        Assert.Equal((0, 1, 2), (second.PacksDeleted, second.PacksRewritten, second.BlocksRemoved));
        Assert.Equal(4, t.BlobCount());
        Assert.Equal(s.B2Content, t.Restore(s.B2.Id, "b"));
        Assert.Equal(VerificationStatus.Healthy, Assert.Single(t.Verify(readData: true)).State);

        // Nothing left: every pack goes, the repository holds no block.
        var last = job.Run(new[] { t.FileOf(s.B2.Id) }, reclaim: true).Reclaim!;
        Assert.Equal((2, 0, 4), (last.PacksDeleted, last.PacksRewritten, last.BlocksRemoved));
        Assert.Empty(t.PackFiles());
        Assert.Equal(0, t.BlobCount());
    }

    [Fact]
    public void LiveSharedLockDefersReclaimAndNothingIsDeleted()
    {
        using var s = new Scene();
        var t = s.T;
        t.Repository.DeleteCheckpoint(t.FileOf(s.A1.Id));
        var packs = t.PackFiles().ToDictionary(p => p, File.ReadAllBytes);
        var indexes = Directory.GetFiles(t.Layout.IndexDirectory).OrderBy(x => x).ToArray();

        using (RepositoryLock.Acquire(t.Layout, LockKind.Shared, TimeSpan.Zero, CancellationToken.None))
        {
            var r = new Pruner(t.Repository).Reclaim(TimeSpan.FromMilliseconds(100), CancellationToken.None);
            Assert.False(r.Completed);
            Assert.Contains("locked", r.Reason);
            Assert.Equal(0, r.PacksDeleted + r.PacksRewritten);
            Assert.Equal(packs.Keys.OrderBy(x => x), t.PackFiles().OrderBy(x => x));
            Assert.All(packs, p => Assert.Equal(p.Value, File.ReadAllBytes(p.Key)));
            Assert.Equal(indexes, Directory.GetFiles(t.Layout.IndexDirectory).OrderBy(x => x).ToArray());
        }

        var done = new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None);
        Assert.True(done.Completed);
        Assert.Equal(1, done.PacksRewritten);
        Assert.Equal(s.B2Content, t.Restore(s.B2.Id, "b"));
    }

    [Fact]
    public void LockLeftByADeadProcessDoesNotBlockReclaimOrCheckpoints()
    {
        using var s = new Scene();
        var t = s.T;
        int deadPid = Enumerable.Range(3_000_000, 1000).First(pid => !Directory.Exists($"/proc/{pid}"));
        string stale = t.Layout.LockPath("00112233445566778899aabbccddeeff");
        File.WriteAllText(stale, $"{{\"kind\":\"exclusive\",\"host\":\"{Environment.MachineName}\",\"pid\":{deadPid},\"processStart\":\"{DateTime.UtcNow.AddHours(-1):o}\",\"time\":\"{DateTime.UtcNow:o}\"}}");
        // A holder on another host that stopped refreshing long ago is stale as well.
        string forgotten = t.Layout.LockPath("ffeeddccbbaa99887766554433221100");
        File.WriteAllText(forgotten, $"{{\"kind\":\"shared\",\"host\":\"elsewhere\",\"pid\":1,\"time\":\"{DateTime.UtcNow.AddHours(-2):o}\"}}");

        var disks = ImageFileSource.OpenDiskFiles(new[] { t.File("b.raw") });
        var m = new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("vm-b", disks) { LockWait = TimeSpan.Zero });
        disks[0].Image.Dispose();
        Assert.Equal(s.B2.Id, m.ParentId);

        t.Repository.DeleteCheckpoint(t.FileOf(s.A1.Id));
        var r = new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None);
        Assert.True(r.Completed, r.Reason);
        Assert.Equal(1, r.PacksRewritten);
        Assert.False(File.Exists(stale));
        Assert.False(File.Exists(forgotten));
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }

    [Fact]
    public void LiveExclusiveLockMakesACheckpointWaitThenFail()
    {
        using var s = new Scene();
        var t = s.T;
        using (RepositoryLock.Acquire(t.Layout, LockKind.Exclusive, TimeSpan.Zero, CancellationToken.None))
        {
            var disks = ImageFileSource.OpenDiskFiles(new[] { t.File("b.raw") });
            Assert.Throws<RepositoryLockedException>(() =>
                new CheckpointJob(t.Repository, null).Run(new CheckpointRequest("vm-b", disks) { LockWait = TimeSpan.FromMilliseconds(50) }));
            disks[0].Image.Dispose();
        }
        Assert.Equal(5, t.Repository.ListCheckpoints().Count);
    }

    [Fact]
    public void UnreadableManifestStopsReclaimBeforeAnythingIsDeleted()
    {
        using var s = new Scene();
        var t = s.T;
        t.Repository.DeleteCheckpoint(t.FileOf(s.A1.Id));
        var damaged = t.FileOf(s.C1.Id);
        var bytes = File.ReadAllBytes(damaged.Path);
        bytes[bytes.Length / 2] ^= 0x20;
        File.WriteAllBytes(damaged.Path, bytes);
        var packs = t.PackFiles().OrderBy(x => x).ToArray();
        long packBytes = t.PackBytes();

        var e = Assert.Throws<InvalidDataException>(() =>
            new RemoveJob(t.Repository, null).Run(new[] { t.FileOf(s.B1.Id) }, reclaim: true));
        Assert.Contains(s.C1.Id, e.Message);
        Assert.Equal(packs, t.PackFiles().OrderBy(x => x).ToArray());
        Assert.Equal(packBytes, t.PackBytes());
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
        Assert.Equal(s.B2Content, t.Restore(s.B2.Id, "b"));
    }

    [Fact]
    public void SelectByPolicyPicksPerVmAndRemovesNothing()
    {
        using var s = new Scene();
        var t = s.T;
        var job = new RemoveJob(t.Repository, null);
        var doomed = job.SelectByPolicy(new RetentionPolicy { KeepLast = 1 }, _ => true);
        Assert.Equal(new[] { s.B1.Id }, doomed.Select(f => f.Id));
        Assert.Empty(job.SelectByPolicy(new RetentionPolicy { KeepLast = 1 }, vm => vm == "vm-a"));
        Assert.Equal(5, t.Repository.ListCheckpoints().Count);
    }
}
