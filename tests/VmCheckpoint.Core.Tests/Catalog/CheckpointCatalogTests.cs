using System.Text.Json;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Catalog;

/// <summary>The LiteDB catalog is an index of the repository and a job log; it can always be rebuilt.</summary>
public sealed class CheckpointCatalogTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    private static string Snapshot(IEnumerable<CheckpointInfo> infos) =>
        JsonSerializer.Serialize(infos.Select(i => new
        {
            i.Key, i.Id, i.VmName, i.Hypervisor, i.Host, Time = i.Time.ToUniversalTime(), EndTime = i.EndTime.ToUniversalTime(),
            i.ParentId, i.VirtualSize, i.ReadBytes, i.ChangedBytes, i.StoredBytes, i.DurationSeconds, i.Note, i.RepositoryId, i.Repository,
            Disks = i.Disks.Select(d => new { d.Name, d.SourcePath, d.SourceFormat, d.VirtualSize, d.DataBytes }),
        }));

    /// <summary>Three checkpoints of two VMs, logged in the catalog by the jobs that took them.</summary>
    private static (TestRepository T, string CatalogPath, CheckpointManifest[] Manifests) Setup()
    {
        var t = new TestRepository();
        string catalogPath = t.File("catalog/catalog.db");
        string a = t.File("a.raw"), b = t.File("b.raw");
        ImageFiles.CreateRaw(a, MiB + 100, (0, ImageFiles.Noise(1, 3 * Block)), (MiB + 99, new byte[] { 1 }));
        ImageFiles.CreateRaw(b, 2 * MiB, (MiB, ImageFiles.Noise(2, 2 * Block)));
        using var catalog = new CheckpointCatalog(catalogPath);
        var m1 = t.Checkpoint("alpha", catalog, a, b);
        ImageFiles.Patch(a, (0, ImageFiles.Noise(3, 100)));
        var m2 = t.Checkpoint("alpha", catalog, a, b);
        var m3 = t.Checkpoint("beta", catalog, b);
        return (t, catalogPath, new[] { m1, m2, m3 });
    }

    [Fact]
    public void SynchronizeIndexesForgetsAndRebuildsIdentically()
    {
        var (t, catalogPath, m) = Setup();
        using var owner = t;
        string logged;
        using (var catalog = new CheckpointCatalog(catalogPath))
        {
            var infos = catalog.GetCheckpoints(t.Repository.Id);
            Assert.Equal(new[] { m[2].Id, m[1].Id, m[0].Id }, infos.Select(i => i.Id)); // newest first
            var second = infos.Single(i => i.Id == m[1].Id);
            Assert.Equal(m[0].Id, second.ParentId);
            Assert.Equal(new[] { "a", "b" }, second.Disks.Select(d => d.Name));
            Assert.Equal(3L * Block + 100, second.Disks[0].DataBytes); // three whole blocks and the 100-byte partial last one
            Assert.Equal(MiB + 100 + 2 * MiB, second.VirtualSize);
            Assert.Equal(m[1].Statistics.ChangedBytes, second.ChangedBytes);
            Assert.Equal(0, catalog.Synchronize(t.Repository).Added);
            logged = Snapshot(catalog.GetCheckpoints(t.Repository.Id));
        }

        File.Delete(catalogPath);
        using (var rebuilt = new CheckpointCatalog(catalogPath))
        {
            Assert.Empty(rebuilt.GetCheckpoints(t.Repository.Id));
            var sync = rebuilt.Synchronize(t.Repository);
            Assert.Equal((3, 0), (sync.Added, sync.Removed));
            Assert.Empty(sync.Unreadable);
            Assert.Equal(logged, Snapshot(rebuilt.GetCheckpoints(t.Repository.Id)));

            t.Repository.DeleteCheckpoint(t.FileOf(m[0].Id));
            var damaged = t.FileOf(m[2].Id).Path;
            File.AppendAllText(damaged, " ");
            var again = rebuilt.Synchronize(t.Repository);
            Assert.Equal((0, 1), (again.Added, again.Removed));
            Assert.Equal(new[] { m[2].Id, m[1].Id }, rebuilt.GetCheckpoints(t.Repository.Id).Select(i => i.Id)); // known, so not re-read
        }

        File.Delete(catalogPath);
        using (var third = new CheckpointCatalog(catalogPath))
        {
            var sync = third.Synchronize(t.Repository);
            Assert.Equal(1, sync.Added);
            Assert.Contains(sync.Unreadable, u => u.Contains(m[2].Id));
            Assert.Equal(new[] { m[1].Id }, third.GetCheckpoints(t.Repository.Id).Select(i => i.Id));
        }
    }

    [Fact]
    public void GetVmsAggregatesPerVm()
    {
        var (t, catalogPath, m) = Setup();
        using var owner = t;
        using var catalog = new CheckpointCatalog(catalogPath);
        var vms = catalog.GetVms(t.Repository.Id);
        Assert.Equal(new[] { "alpha", "beta" }, vms.Select(v => v.Name));
        var alpha = vms[0];
        Assert.Equal(2, alpha.CheckpointCount);
        Assert.Equal(m[1].Id, alpha.LatestId);
        Assert.Equal(m[0].Statistics.StoredBytes + m[1].Statistics.StoredBytes, alpha.StoredBytes);
        Assert.Equal(m[1].VirtualSize, alpha.VirtualSize);
        Assert.Equal("Offline", alpha.Hypervisor);
        Assert.Equal(t.Repository.Path, alpha.Repository);
        Assert.Equal(1, vms[1].CheckpointCount);
        Assert.Equal(0, vms[1].StoredBytes); // beta's disk was already in the repository
        Assert.Equal(new[] { "beta" }, catalog.GetVms(t.Repository.Id, n => n.StartsWith('b')).Select(v => v.Name));
        Assert.Empty(catalog.GetVms("no-such-repository"));
    }

    [Fact]
    public void JobLogRecordsStartAndFinish()
    {
        var (t, catalogPath, m) = Setup();
        using var owner = t;
        using var catalog = new CheckpointCatalog(catalogPath);
        var checkpoints = catalog.GetJobs(j => j.Kind == "Checkpoint");
        Assert.Equal(3, checkpoints.Count);
        Assert.All(checkpoints, j => Assert.Equal(JobResult.Succeeded, j.Outcome));
        Assert.Equal(new[] { m[2].Id, m[1].Id, m[0].Id }, checkpoints.Select(j => j.CheckpointId));
        Assert.Equal(new[] { "beta", "alpha", "alpha" }, checkpoints.Select(j => j.VmName));

        var job = catalog.StartJob("Verify", "gamma", t.Repository);
        Assert.NotNull(job.Id);
        var running = catalog.GetJobs(j => j.Id == job.Id).Single();
        Assert.Equal(JobResult.Running, running.Outcome);
        Assert.Null(running.End);
        Assert.Equal(Environment.ProcessId, running.ProcessId);
        catalog.FinishJob(job, JobResult.Failed, error: "2 of 3 damaged", checkpointId: "abcd", message: "checked");
        var finished = catalog.GetJobs(j => j.Id == job.Id).Single();
        Assert.Equal((JobResult.Failed, "2 of 3 damaged", "abcd", "checked", "gamma", t.Repository.Id, "Verify"),
            (finished.Outcome, finished.Error, finished.CheckpointId, finished.Message, finished.VmName, finished.RepositoryId, finished.Kind));
        Assert.NotNull(finished.End);
        Assert.True(finished.End >= finished.Start);
        Assert.Equal(job.Id, catalog.GetJobs(max: 1).Single().Id); // newest first

        // A failing run is logged as failed, with its error.
        string path = t.File("a.raw");
        var faulty = new FaultyDiskImage(DiskImage.Open(path), failAfterReads: 1);
        using (faulty)
            Assert.Throws<IOException>(() => new CheckpointJob(t.Repository, catalog).Run(new CheckpointRequest("alpha", new[] { new DiskSource("a", faulty) })));
        var failed = catalog.GetJobs(max: 1).Single();
        Assert.Equal((JobResult.Failed, "Checkpoint", "alpha"), (failed.Outcome, failed.Kind, failed.VmName));
        Assert.Contains("injected", failed.Error);
        Assert.Equal(3, catalog.GetCheckpoints(t.Repository.Id).Count);
    }

    [Fact]
    public void TwoCatalogInstancesShareOneFile()
    {
        var (t, catalogPath, m) = Setup();
        using var owner = t;
        using var first = new CheckpointCatalog(catalogPath);
        using var second = new CheckpointCatalog(catalogPath);
        Assert.Equal(3, second.GetCheckpoints(t.Repository.Id).Count);

        first.RemoveCheckpoint(t.Repository.Id, m[0].Id);
        Assert.Equal(2, second.GetCheckpoints(t.Repository.Id).Count);

        var fromFirst = first.StartJob("Restore", "alpha", t.Repository);
        var fromSecond = second.StartJob("Restore", "beta", t.Repository);
        second.FinishJob(fromSecond, JobResult.Succeeded);
        first.FinishJob(fromFirst, JobResult.Cancelled, "Cancelled.");
        var restores = second.GetJobs(j => j.Kind == "Restore");
        Assert.Equal(2, restores.Count);
        Assert.Equal(new[] { JobResult.Cancelled, JobResult.Succeeded }, restores.OrderBy(j => j.VmName).Select(j => j.Outcome));

        Assert.Equal(1, second.Synchronize(t.Repository).Added);
        Assert.Equal(3, first.GetCheckpoints(t.Repository.Id).Count);

        // Writers on two threads at once.
        var threads = new[] { first, second }.Select(c => new Thread(() =>
        {
            for (int i = 0; i < 20; i++) c.FinishJob(c.StartJob("Verify", "x", t.Repository), JobResult.Succeeded);
        })).ToList();
        threads.ForEach(th => th.Start());
        Assert.All(threads, th => Assert.True(th.Join(TimeSpan.FromSeconds(60))));
        Assert.Equal(40, first.GetJobs(j => j.Kind == "Verify" && j.Outcome == JobResult.Succeeded).Count);
    }
}
