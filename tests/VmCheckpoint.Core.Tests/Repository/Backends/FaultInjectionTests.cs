using System.Security.Cryptography;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Repository.Backends;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>
/// The repository's crash-safety rules, proven against a backend that fails where a share or a disk would: a disk that
/// fills at any write, a put torn at any byte by a crash, reads that get EIO, listings that fail. After each fault the
/// repository reads as it did, shows no half object, and the next checkpoint works; a failed listing is never taken for
/// an empty one. (tests/Pester/Share.Tests.ps1 does the same on a real samba share.)
/// </summary>
public sealed class FaultInjectionTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    /// <summary>A repository with one checkpoint of "vm", and the image changed since (four blocks to store next).</summary>
    private sealed class Scene : IDisposable
    {
        public readonly TestRepository T = new(faults: true);
        public readonly string Image;
        public readonly byte[] FirstContent;
        public readonly string FirstId;
        public readonly byte[] SecondContent;

        public Scene()
        {
            Image = T.File("disk.raw");
            FirstContent = ImageFiles.CreateRaw(Image, MiB, (0, ImageFiles.Noise(1, 6 * Block)), (MiB - 2 * Block, ImageFiles.Noise(2, Block)));
            FirstId = T.Checkpoint("vm", Image).Id;
            SecondContent = ImageFiles.Patch(Image, (Block, ImageFiles.Noise(3, 2 * Block)), (8 * Block, ImageFiles.Noise(4, 2 * Block)));
        }

        public FaultInjectingBackend Faults => T.Faults!;

        public void Dispose() => T.Dispose();
    }

    [Fact]
    public void ADiskFullAtAnyWriteFailsTheRunAndLeavesTheRepositoryAsItWas()
    {
        int n = 1;
        for (; ; n++)
        {
            using var s = new Scene();
            var t = s.T;
            s.Faults.DiskFullAtWrite(n);
            CheckpointManifest second;
            try
            {
                second = t.Checkpoint("vm", s.Image);
            }
            catch (IOException e)
            {
                Assert.True(e.HResult == FaultInjectingBackend.DiskFull, $"write {n}: {e}");
                s.Faults.Reset();
                // The process lived on: it cleaned up after itself. Nothing half-written, no lock, no temporary file.
                Assert.Empty(Directory.GetFiles(t.Folder.Root, "*.tmp", SearchOption.AllDirectories));
                Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
                AssertEveryObjectWhole(t);
                AssertReadsAsBefore(s);
                AssertTheNextCheckpointWorks(s);
                continue;
            }
            // Past the run's last write: the fault never fired.
            s.Faults.Reset();
            Assert.Equal(s.SecondContent, t.Restore(second.Id, "disk"));
            break;
        }
        // Lock (write, commit), pack (header, 4 blocks, checksum, entries, footer, commit), index and manifest (2 each).
        Assert.True(n > 14, $"only {n - 1} writes were faulted");
    }

    [Fact]
    public void APutTornAtAnyByteByACrashLeavesNoHalfObjectAndTheNextRunWorks()
    {
        // What a run puts, and how long each object is, from a run without faults.
        List<(string Name, long? Length)> puts;
        using (var dry = new Scene())
        {
            dry.Faults.PutLog.Clear();
            dry.T.Checkpoint("vm", dry.Image);
            puts = dry.Faults.PutLog.ToList();
        }
        Assert.Equal(new[] { "locks/", "packs/", "index/", "checkpoints/" }, puts.Select(p => p.Name.Substring(0, p.Name.IndexOf('/') + 1)));
        var random = new Random(12);
        for (int put = 1; put <= puts.Count; put++)
        {
            long length = puts[put - 1].Length!.Value;
            // Torn before its first byte, at a random byte, and with every byte written but not yet renamed.
            foreach (long at in new[] { 0, 1 + random.NextInt64(length - 1), length })
            {
                string what = $"put {put} ({puts[put - 1].Name}) torn at byte {at} of {length}";
                using var s = new Scene();
                var t = s.T;
                var before = ObjectNames(t);
                s.Faults.TearPut(put, at);
                Assert.ThrowsAny<IOException>(() => t.Checkpoint("vm", s.Image));
                Assert.True(s.Faults.Crashed, what);

                // A new process on the same folder. What the dead one left is a temporary, never an object.
                s.Faults.Reset();
                Assert.NotEmpty(Directory.GetFiles(t.Folder.Root, "*.tmp", SearchOption.AllDirectories));
                var after = ObjectNames(t);
                Assert.All(after, name => Assert.DoesNotContain(".tmp", name));
                Assert.DoesNotContain(after.Except(before), name => name.StartsWith("checkpoints/", StringComparison.Ordinal));
                AssertEveryObjectWhole(t);
                AssertReadsAsBefore(s);
                // The dead run's shared lock does not stop a checkpoint...
                AssertTheNextCheckpointWorks(s);
                // ...and once its holder is known dead, reclaiming runs, and removes leftovers only when they are old.
                foreach (var lockFile in Directory.GetFiles(t.Layout.LocksDirectory)) File.Delete(lockFile);
                var temporaries = Temporaries(t);
                Assert.True(new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None).Completed, what);
                Assert.Equal(temporaries, Temporaries(t));
                foreach (var f in temporaries) File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddDays(-2));
                Assert.True(new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None).Completed, what);
                Assert.Empty(Directory.GetFiles(t.Folder.Root, "*.tmp", SearchOption.AllDirectories));
                Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
            }
        }
    }

    [Fact]
    public void APackWriterThatFailedOnceIsNeverSealed()
    {
        using var t = new TestRepository(faults: true);
        var blobs = Enumerable.Range(0, 5).Select(i => ImageFiles.Noise(10 + i, 3000 + i)).ToArray();
        using var sha = SHA256.Create();
        var hashes = blobs.Select(b => BlockHash.Compute(sha, b, 0, b.Length)).ToArray();
        using (var store = t.Repository.OpenStore(CancellationToken.None))
        {
            store.Add(hashes[0], blobs[0], blobs[0].Length, blobs[0].Length, BlobCompression.None);
            store.Add(hashes[1], blobs[1], blobs[1].Length, blobs[1].Length, BlobCompression.None);
            t.Faults!.DiskFullAtWrite(1); // half of blob 2 reaches the pack, then the disk is full
            Assert.Throws<IOException>(() => store.Add(hashes[2], blobs[2], blobs[2].Length, blobs[2].Length, BlobCompression.None));
            // The pack holding 0 and 1 is gone with it: they are not in the store, and will be stored again.
            Assert.False(store.Contains(hashes[0]));
            Assert.False(store.Contains(hashes[1]));
            store.Add(hashes[3], blobs[3], blobs[3].Length, blobs[3].Length, BlobCompression.None);
            store.Add(hashes[4], blobs[4], blobs[4].Length, blobs[4].Length, BlobCompression.None);
            store.Flush();
        }
        AssertEveryObjectWhole(t);
        using (var store = t.Repository.OpenStore(CancellationToken.None))
        using (var reader = new BlockReader(store, t.Layout))
        {
            Assert.Equal(2, store.Count);
            var buffer = new byte[Block];
            foreach (int i in new[] { 3, 4 })
            {
                Assert.Equal(blobs[i].Length, reader.Read(hashes[i], buffer));
                Assert.Equal(blobs[i], buffer.AsSpan(0, blobs[i].Length).ToArray());
            }
        }
        Assert.Single(t.PackFiles());
        Assert.Empty(Directory.GetFiles(t.Folder.Root, "*.tmp", SearchOption.AllDirectories));
    }

    [Fact]
    public void AnUnreadablePackFailsARestoreOrAVerifyAsAnErrorNotAsDamage()
    {
        using var s = new Scene();
        var t = s.T;
        s.Faults.FailReads = name => name.StartsWith("packs/", StringComparison.Ordinal);
        string destination = t.File("restore");
        var e = Assert.ThrowsAny<IOException>(() => new RestoreJob(t.Repository, null).Run(new RestoreRequest(t.FileOf(s.FirstId), destination) { Format = DiskFormat.Raw }));
        Assert.IsNotType<BlockDamagedException>(e);
        Assert.Equal(FaultInjectingBackend.IoError, e.HResult);
        Assert.Empty(Directory.GetFiles(destination));
        Assert.IsNotType<BlockDamagedException>(Assert.ThrowsAny<IOException>(() => t.Verify(readData: true)));
        Assert.All(t.Verify(readData: false), v => Assert.Equal(VerificationStatus.Healthy, v.State)); // reads no pack

        s.Faults.FailReads = null;
        AssertReadsAsBefore(s);
    }

    [Fact]
    public void AnUnreadableIndexOrManifestOrLockStopsTheRunAndChangesNothing()
    {
        using var s = new Scene();
        var t = s.T;
        var objects = ObjectNames(t);

        // An index that gets EIO is not a damaged one to skip: the run stops rather than store every block again.
        s.Faults.FailReads = name => name.StartsWith("index/", StringComparison.Ordinal);
        Assert.Equal(FaultInjectingBackend.IoError, Assert.ThrowsAny<IOException>(() => t.Checkpoint("vm", s.Image)).HResult);
        Assert.Equal(objects, ObjectNames(t));

        // Reclaiming stops at a manifest it cannot read: its blocks are unknown.
        s.Faults.FailReads = name => name.StartsWith("checkpoints/", StringComparison.Ordinal);
        Assert.Throws<InvalidDataException>(() => new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None));
        Assert.Equal(objects, ObjectNames(t));

        // A lock that cannot be read may be a live holder's: the contender fails and takes its own lock back.
        string holder = t.Layout.LockPath("0123456789abcdef0123456789abcdef");
        File.WriteAllText(holder, "{\"kind\":\"exclusive\"}");
        s.Faults.FailReads = name => name.StartsWith("locks/", StringComparison.Ordinal);
        var e = Assert.ThrowsAny<IOException>(() => t.Repository.Lock(LockKind.Shared, TimeSpan.Zero, CancellationToken.None).Dispose());
        Assert.IsNotType<RepositoryLockedException>(e);
        Assert.Equal(new[] { holder }, Directory.GetFiles(t.Layout.LocksDirectory));
        File.Delete(holder);

        s.Faults.FailReads = null;
        AssertReadsAsBefore(s);
        AssertTheNextCheckpointWorks(s);
    }

    [Fact]
    public void AFailingListingIsNeverTakenForAnEmptyOne()
    {
        using var s = new Scene();
        var t = s.T;
        var second = t.Checkpoint("vm", s.Image);
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        catalog.Synchronize(t.Repository);
        var known = catalog.GetCheckpoints(t.Repository.Id).Select(c => c.Id).OrderBy(x => x).ToList();
        Assert.Equal(2, known.Count);
        t.Repository.DeleteCheckpoint(t.FileOf(s.FirstId)); // its blocks become garbage for reclaiming
        var objects = ObjectNames(t);

        foreach (var failing in new[] { "checkpoints/", "packs/", "index/" })
        {
            s.Faults.FailLists = prefix => prefix.StartsWith(failing, StringComparison.Ordinal);
            // Taken for empty, each would be a disaster: reclaiming every pack, or the next run storing every block anew.
            Assert.ThrowsAny<IOException>(() => new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None));
            Assert.ThrowsAny<IOException>(() => t.Checkpoint("vm", s.Image));
            Assert.ThrowsAny<IOException>(() => t.Verify(readData: false));
            Assert.Equal(objects, ObjectNames(t));
            Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
        }

        // The catalog forgets nothing while the checkpoints cannot be listed.
        s.Faults.FailLists = prefix => prefix.StartsWith("checkpoints/", StringComparison.Ordinal);
        Assert.ThrowsAny<IOException>(() => t.Repository.ListCheckpoints());
        Assert.ThrowsAny<IOException>(() => catalog.Synchronize(t.Repository));
        Assert.Equal(known, catalog.GetCheckpoints(t.Repository.Id).Select(c => c.Id).OrderBy(x => x));

        // Nor does a contender take unlistable locks for none: it fails and leaves no lock of its own.
        s.Faults.FailLists = prefix => prefix.StartsWith("locks/", StringComparison.Ordinal);
        Assert.ThrowsAny<IOException>(() => t.Repository.Lock(LockKind.Exclusive, TimeSpan.Zero, CancellationToken.None).Dispose());
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));

        s.Faults.FailLists = null;
        var reclaimed = new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None);
        Assert.True(reclaimed.Completed);
        Assert.Equal(s.SecondContent, t.Restore(second.Id, "disk"));
        Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
    }

    private static string[] Temporaries(TestRepository t) =>
        Directory.GetFiles(t.Folder.Root, "*.tmp", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).ToArray();

    /// <summary>The objects of the repository as a fault-free backend lists them, sorted.</summary>
    private static List<string> ObjectNames(TestRepository t) => t.Folder.List("").Select(o => o.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();

    /// <summary>Every object listed parses whole: packs by their trailer, indexes and manifests by their checksums.</summary>
    private static void AssertEveryObjectWhole(TestRepository t)
    {
        var backend = t.Folder;
        foreach (var o in backend.List(""))
        {
            string name = o.Name;
            if (name.EndsWith(RepositoryLayout.PackSuffix, StringComparison.Ordinal))
            {
                using var reader = backend.OpenRead(name);
                PackFormat.ReadTrailer(reader, name);
            }
            else if (name.EndsWith(RepositoryLayout.IndexSuffix, StringComparison.Ordinal))
                IndexFile.Parse(backend.ReadAll(name), name);
            else if (name.StartsWith(RepositoryLayout.CheckpointsPrefix, StringComparison.Ordinal))
            {
                string id = RepositoryLayout.LastSegment(name).Split('_', '.')[1];
                Assert.Equal(id, CheckpointManifest.ComputeId(backend.ReadAll(name)));
            }
            else if (name.StartsWith(RepositoryLayout.LocksPrefix, StringComparison.Ordinal))
                Assert.StartsWith("{", System.Text.Encoding.UTF8.GetString(backend.ReadAll(name)));
            else
                Assert.Equal(RepositoryLayout.ConfigName, name);
        }
    }

    private static void AssertReadsAsBefore(Scene s)
    {
        var t = s.T;
        Assert.Contains(t.Repository.ListCheckpoints(), f => f.Id == s.FirstId);
        Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
        Assert.Equal(s.FirstContent, t.Restore(s.FirstId, "disk"));
    }

    private static void AssertTheNextCheckpointWorks(Scene s)
    {
        var t = s.T;
        var next = t.Checkpoint("vm", s.Image);
        Assert.Equal(s.FirstId, next.ParentId);
        Assert.Equal(s.SecondContent, t.Restore(next.Id, "disk"));
        Assert.All(t.Verify(readData: true), v => Assert.Equal(VerificationStatus.Healthy, v.State));
    }
}
