using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// A folder of the repository that exists but cannot be read (an SMB share that stopped answering mid-run gives
/// EIO; here a symbolic link to itself gives ELOOP, the same "exists, unreadable" on any Unix file system) is an
/// error, never an empty folder: taken for empty, the catalog would forget every checkpoint and reclaiming would
/// delete every pack. A folder that does not exist is empty.
/// </summary>
public sealed class UnreadableFolderTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    /// <summary>Replaces a folder by a link to itself until disposed.</summary>
    private sealed class Unreadable : IDisposable
    {
        private readonly string _path;
        private readonly string _away;

        public Unreadable(string path)
        {
            _path = path;
            _away = path + ".away";
            Directory.Move(path, _away);
            Directory.CreateSymbolicLink(path, path);
            Assert.False(Directory.Exists(path)); // what the repository must not rely on
        }

        public void Dispose()
        {
            File.Delete(_path);
            Directory.Move(_away, _path);
        }
    }

    private static (TestRepository T, byte[] Content, string Id) Setup()
    {
        var t = new TestRepository();
        string a = t.File("a.raw");
        ImageFiles.CreateRaw(a, MiB, (0, ImageFiles.Noise(1, 4 * Block)));
        var first = t.Checkpoint("vm", a);
        var content = ImageFiles.Patch(a, (0, ImageFiles.Noise(2, 2 * Block)));
        var second = t.Checkpoint("vm", a);
        return (t, content, second.Id);
    }

    [Fact]
    public void ReclaimingWithAnUnreadableCheckpointsFolderFailsAndDeletesNothing()
    {
        if (OperatingSystem.IsWindows()) return; // the stand-in for an unreadable folder is a Unix symlink loop
        var (t, content, id) = Setup();
        using var owner = t;
        var packs = t.PackFiles().OrderBy(p => p).ToArray();
        using (new Unreadable(t.Layout.CheckpointsDirectory))
        {
            Assert.ThrowsAny<IOException>(() => t.Repository.ListCheckpoints());
            Assert.ThrowsAny<IOException>(() => t.Repository.ListCheckpoints("vm"));
            var job = new RemoveJob(t.Repository, null) { LockWait = TimeSpan.FromSeconds(5) };
            Assert.ThrowsAny<IOException>(() => job.Run(Array.Empty<CheckpointFile>(), reclaim: true));
        }
        Assert.Equal(packs, t.PackFiles().OrderBy(p => p));
        Assert.Equal(content, t.Restore(id, "a"));
        Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
    }

    [Fact]
    public void SynchronizingWithAnUnreadableCheckpointsFolderFailsAndTheCatalogForgetsNothing()
    {
        if (OperatingSystem.IsWindows()) return;
        var (t, _, _) = Setup();
        using var owner = t;
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        catalog.Synchronize(t.Repository);
        var known = catalog.GetCheckpoints(t.Repository.Id).Select(c => c.Id).OrderBy(x => x).ToList();
        Assert.Equal(2, known.Count);
        using (new Unreadable(t.Layout.CheckpointsDirectory))
            Assert.ThrowsAny<IOException>(() => catalog.Synchronize(t.Repository));
        Assert.Equal(known, catalog.GetCheckpoints(t.Repository.Id).Select(c => c.Id).OrderBy(x => x));
    }

    [Fact]
    public void AnUnreadablePacksFolderIsAnErrorNotAnEmptyStore()
    {
        if (OperatingSystem.IsWindows()) return;
        var (t, _, _) = Setup();
        using var owner = t;
        using (new Unreadable(t.Layout.PacksDirectory))
            Assert.ThrowsAny<IOException>(() => t.Repository.OpenStore(CancellationToken.None).Dispose());
        using (new Unreadable(t.Layout.IndexDirectory))
            Assert.ThrowsAny<IOException>(() => t.Repository.OpenStore(CancellationToken.None).Dispose());
        Assert.Equal(6, t.BlobCount());
    }

    [Fact]
    public void ALockThatCannotBeReadIsNeitherIgnoredNorLeftBehind()
    {
        if (OperatingSystem.IsWindows()) return;
        var (t, content, id) = Setup();
        using var owner = t;
        var packs = t.PackFiles().OrderBy(p => p).ToArray();
        // A holder's lock whose read fails with an I/O error (a link to itself: ELOOP; on a share: EIO).
        string unreadable = t.Layout.LockPath("0123456789abcdef0123456789abcdef");
        File.CreateSymbolicLink(unreadable, unreadable);

        var e = Assert.ThrowsAny<IOException>(() => t.Repository.Lock(LockKind.Shared, TimeSpan.Zero, CancellationToken.None).Dispose());
        Assert.IsNotType<RepositoryLockedException>(e);
        Assert.Equal(new[] { unreadable }, Directory.GetFiles(t.Layout.LocksDirectory));
        var job = new RemoveJob(t.Repository, null) { LockWait = TimeSpan.FromSeconds(1) };
        Assert.ThrowsAny<IOException>(() => job.Run(new[] { t.Repository.ListCheckpoints("vm")[0] }.ToList(), reclaim: true));
        Assert.Equal(packs, t.PackFiles().OrderBy(p => p));
        Assert.Equal(new[] { unreadable }, Directory.GetFiles(t.Layout.LocksDirectory));

        File.Delete(unreadable);
        Assert.Equal(content, t.Restore(id, "a"));
    }

    [Fact]
    public void MissingFoldersAreEmpty()
    {
        using var t = new TestRepository();
        Assert.Empty(t.Repository.ListCheckpoints("never-checkpointed"));
        Directory.Delete(t.Layout.CheckpointsDirectory);
        Assert.Empty(t.Repository.ListCheckpoints());
        Directory.Delete(t.Layout.IndexDirectory);
        Assert.Equal(0, t.BlobCount());
    }
}
