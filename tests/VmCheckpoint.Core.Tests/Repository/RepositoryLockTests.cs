using System.Diagnostics;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// A lock that cannot be kept stops the job under it before another process could take it for stale (restic's lock
/// monitor), and a lock that cannot be read for lack of permission is never taken for no lock.
/// </summary>
public sealed class RepositoryLockTests
{
    /// <summary>Refresh every 100 ms, retry every 50 ms, give up after 4 s without a refresh (room for a loaded 2-core CI host).</summary>
    private static readonly LockTimings Fast = new(TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(4));

    private static string[] Locks(TestRepository t) => Directory.GetFiles(t.Layout.LocksDirectory);

    private static bool WaitFor(Func<bool> condition, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > timeout) return false;
            Thread.Sleep(10);
        }
        return true;
    }

    [Fact]
    public void HoldersGiveUpWellBeforeTheirLockCanBeTakenForStale()
    {
        Assert.True(LockTimings.Default.GiveUpAfter <= RepositoryLock.StaleAfter / 2);
        Assert.True(LockTimings.Default.RefreshEvery * 2 < LockTimings.Default.GiveUpAfter); // more than one refresh fails first
        Assert.Throws<ArgumentOutOfRangeException>(() => new LockTimings(TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(30), RepositoryLock.StaleAfter));
    }

    [Fact]
    public void ARefreshThatKeepsFailingCancelsTheJobBeforeTheLockCanGoStale()
    {
        using var t = new TestRepository(faults: true);
        using var held = RepositoryLock.Acquire(t.Layout, LockKind.Shared, TimeSpan.Zero, CancellationToken.None, Fast);
        t.Faults!.FailPuts = name => name.StartsWith(RepositoryLayout.LocksPrefix, StringComparison.Ordinal);
        var clock = Stopwatch.StartNew();
        var e = Assert.Throws<RepositoryLockLostException>(() => held.Run(CancellationToken.None, token =>
        {
            token.WaitHandle.WaitOne(TimeSpan.FromSeconds(30)); // a long job, honouring its token
            token.ThrowIfCancellationRequested();
            return 0;
        }));
        Assert.InRange(clock.Elapsed, Fast.GiveUpAfter - Fast.RefreshEvery, TimeSpan.FromSeconds(20));
        Assert.True(held.IsLost);
        Assert.True(e.Message.Contains("last refreshed"), e.Message);
        Assert.True(e.Message.Contains("Input/output error"), e.Message);
        Assert.IsAssignableFrom<IOException>(e.InnerException);
        Assert.Throws<RepositoryLockLostException>(() => held.ThrowIfLost());

        // A cancellation asked by the caller stays a cancellation, lock or no lock.
        using var stop = new CancellationTokenSource();
        stop.Cancel();
        Assert.Throws<OperationCanceledException>(() => held.Run(stop.Token, token => { token.ThrowIfCancellationRequested(); return 0; }));

        t.Faults.FailPuts = null;
        held.Dispose();
        Assert.Empty(Locks(t));
    }

    [Fact]
    public void ARefreshThatFailsForAWhileIsTriedAgainAndTheLockKept()
    {
        using var t = new TestRepository(faults: true);
        using var held = RepositoryLock.Acquire(t.Layout, LockKind.Exclusive, TimeSpan.Zero, CancellationToken.None, Fast);
        string first = Assert.Single(Locks(t));
        int failures = 0;
        t.Faults!.FailPuts = name => name.StartsWith(RepositoryLayout.LocksPrefix, StringComparison.Ordinal) && Interlocked.Increment(ref failures) <= 5;
        Assert.True(WaitFor(() => Locks(t) is { Length: 1 } now && now[0] != first, TimeSpan.FromSeconds(10)), "the lock was never refreshed");
        Assert.True(failures > 5);
        Thread.Sleep(Fast.GiveUpAfter + TimeSpan.FromMilliseconds(500));
        Assert.False(held.IsLost);
        Assert.InRange(Locks(t).Length, 1, 2); // two for an instant: the fresh one is written before the old goes
    }

    [Fact]
    public void ALockRemovedByAnotherProcessIsLost()
    {
        using var t = new TestRepository();
        using var held = RepositoryLock.Acquire(t.Layout, LockKind.Shared, TimeSpan.Zero, CancellationToken.None, Fast);
        File.Delete(Assert.Single(Locks(t)));
        Assert.True(held.LostToken.WaitHandle.WaitOne(TimeSpan.FromSeconds(10)));
        Assert.Contains("removed by another process", Assert.Throws<RepositoryLockLostException>(() => held.ThrowIfLost()).Message);
        Assert.Empty(Locks(t)); // nothing written again under a lost lock
    }

    [Fact]
    public void AnOldLockThatCannotBeDeletedIsNotALossAndGoesAtTheEnd()
    {
        using var t = new TestRepository(faults: true);
        var held = RepositoryLock.Acquire(t.Layout, LockKind.Shared, TimeSpan.Zero, CancellationToken.None, Fast);
        t.Faults!.FailDeletes = name => name.StartsWith(RepositoryLayout.LocksPrefix, StringComparison.Ordinal);
        Assert.True(WaitFor(() => Locks(t).Length >= 2, TimeSpan.FromSeconds(10)));
        Thread.Sleep(Fast.GiveUpAfter + TimeSpan.FromMilliseconds(500));
        Assert.False(held.IsLost); // the fresh lock was written: the holder is protected
        t.Faults.FailDeletes = null;
        held.Dispose();
        Assert.Empty(Locks(t));
    }

    [Fact]
    public void ALockThatCannotBeReadForLackOfPermissionIsNotNoLock()
    {
        using var t = new TestRepository(faults: true);
        string image = t.File("disk.raw");
        ImageFiles.CreateRaw(image, 1 << 20, (0, ImageFiles.Noise(1, TestRepository.BlockSize)));
        string other = t.Layout.LockName("0123456789abcdef0123456789abcdef");
        File.WriteAllText(t.Folder.PathOf(other),
            $"{{\"kind\":\"exclusive\",\"host\":\"elsewhere\",\"pid\":1,\"processStart\":\"{DateTime.UtcNow:o}\",\"time\":\"{DateTime.UtcNow:o}\"}}");
        t.Faults!.DenyReads = name => name == other;

        var e = Assert.Throws<UnauthorizedAccessException>(() => t.Repository.Lock(LockKind.Shared, TimeSpan.Zero, CancellationToken.None).Dispose());
        Assert.Contains(t.Folder.PathOf(other), e.Message);
        Assert.Equal(new[] { t.Folder.PathOf(other) }, Locks(t)); // its own lock taken back
        // Every job refuses rather than run beside what may be a live reclaim.
        Assert.Throws<UnauthorizedAccessException>(() => t.Checkpoint("vm", image));
        Assert.Throws<UnauthorizedAccessException>(() => new Pruner(t.Repository).Reclaim(TimeSpan.Zero, CancellationToken.None));
        Assert.Throws<UnauthorizedAccessException>(() => new VerifyJob(t.Repository, null) { LockWait = TimeSpan.Zero }.Verify(t.Repository.ListCheckpoints(), readData: false));
        Assert.Empty(Directory.GetFiles(t.Layout.CheckpointsDirectory, "*", SearchOption.AllDirectories));
        Assert.Equal(new[] { t.Folder.PathOf(other) }, Locks(t));

        // Readable, it is what it says: a live exclusive lock of another host.
        t.Faults.DenyReads = null;
        Assert.Throws<RepositoryLockedException>(() => t.Repository.Lock(LockKind.Shared, TimeSpan.Zero, CancellationToken.None).Dispose());
    }

    [Fact]
    public void AVerificationWhoseLockCannotBeRefreshedStopsAsLockLostAndIsLoggedSo()
    {
        using var t = new TestRepository(faults: true);
        string image = t.File("disk.raw");
        for (int i = 0; i < 3; i++)
        {
            ImageFiles.CreateRaw(image, 1 << 20, (0, ImageFiles.Noise(10 + i, 2 * TestRepository.BlockSize)));
            t.Checkpoint("vm" + i, image);
        }
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        // The share stops taking writes once the verification reads packs, and reads are slow.
        t.Faults!.BeforeRead = name =>
        {
            if (!name.StartsWith(RepositoryLayout.PacksPrefix, StringComparison.Ordinal)) return;
            t.Faults.FailPuts = n => n.StartsWith(RepositoryLayout.LocksPrefix, StringComparison.Ordinal);
            Thread.Sleep(400);
        };
        var job = new VerifyJob(t.Repository, catalog) { LockTimings = Fast };
        var clock = Stopwatch.StartNew();
        Assert.Throws<RepositoryLockLostException>(() => job.Verify(t.Repository.ListCheckpoints(), readData: true));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60));
        var logged = Assert.Single(catalog.GetJobs());
        Assert.Equal(JobResult.Failed, logged.Outcome);
        Assert.Contains("lock", logged.Error);
        t.Faults.Reset();
        Assert.Empty(Locks(t));
    }
}
