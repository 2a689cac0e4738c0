using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Fakes;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>
/// The one orchestrator: begin, store, seal, manifest, commit in that order; any failure abandons the session
/// (dispose without commit) and is logged once in the job log, as Failed or Cancelled.
/// </summary>
public sealed class VmCheckpointJobTests
{
    private static (TestRepository T, CheckpointCatalog Catalog, string Image) Setup()
    {
        var t = new TestRepository();
        string image = t.File("vda.raw");
        ImageFiles.CreateRaw(image, 1 << 20, (4096, new byte[] { 1, 2, 3 }));
        var catalog = new CheckpointCatalog(t.File("catalog.db"));
        return (t, catalog, image);
    }

    [Fact]
    public void StoresThenSealsThenCommits()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image }));
            var m = new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan());

            Assert.Equal(new[] { "Begin", "Seal", "Commit", "Dispose" }, source.Calls);
            Assert.Equal("track-1", m.ChangeTrackingId);
            Assert.Equal(0.05, m.Statistics.PauseSeconds);
            Assert.Single(t.Repository.ListCheckpoints("vm"));
            var job = Assert.Single(catalog.GetJobs());
            Assert.Equal(JobResult.Succeeded, job.Outcome);
            Assert.Equal(m.Id, job.CheckpointId);
        }
    }

    [Fact]
    public void TheParentsTrackingReachesTheSourceOnlyFromTheSameSource()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image }));
            new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan());
            new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan());
            Assert.Equal("track-1", source.LastPlan!.ParentTrackingId);
            Assert.Equal(image, source.LastPlan.ParentDiskFiles["vda"]);
            Assert.Equal(TestRepository.BlockSize, source.LastPlan.BlockSize);

            var other = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image })) { Name = "Other" };
            new VmCheckpointJob(t.Repository, catalog, other).Run("vm", new CheckpointPlan());
            Assert.Null(other.LastPlan!.ParentTrackingId);
            Assert.Empty(other.LastPlan.ParentDiskFiles);
        }
    }

    [Fact]
    public void AFailedReadAbandonsTheSessionAndLogsOneFailedJob()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => new[] { new DiskSource("vda", new FaultyDiskImage(DiskImage.Open(image), failAfterReads: 0)) });
            var e = Assert.Throws<IOException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan()));

            Assert.Contains("injected", e.Message);
            Assert.Equal(new[] { "Begin", "Dispose" }, source.Calls);
            Assert.Empty(t.Repository.ListCheckpoints("vm"));
            var job = Assert.Single(catalog.GetJobs());
            Assert.Equal(JobResult.Failed, job.Outcome);
            Assert.Contains("injected", job.Error);
        }
    }

    [Fact]
    public void AFailedSealWritesNoManifestAndNeverCommits()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image })) { FailSeal = new InvalidOperationException("domain started meanwhile") };
            Assert.Throws<InvalidOperationException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan()));

            Assert.Equal(new[] { "Begin", "Seal", "Dispose" }, source.Calls);
            Assert.Empty(t.Repository.ListCheckpoints("vm"));
            Assert.Equal(JobResult.Failed, Assert.Single(catalog.GetJobs()).Outcome);
        }
    }

    [Fact]
    public void AFailureToBeginIsLoggedOnce()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => throw new InvalidOperationException("not reached")) { FailBegin = new VmNotFoundException("No VM 'vm'.") };
            Assert.Throws<VmNotFoundException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan()));

            Assert.Equal(new[] { "Begin" }, source.Calls);
            var job = Assert.Single(catalog.GetJobs());
            Assert.Equal(JobResult.Failed, job.Outcome);
            Assert.Equal("No VM 'vm'.", job.Error);
        }
    }

    [Fact]
    public void ACancelledRunIsLoggedAsCancelled()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image }));
            using var stop = new CancellationTokenSource();
            stop.Cancel();
            Assert.ThrowsAny<OperationCanceledException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run("vm", new CheckpointPlan(), stop.Token));

            Assert.DoesNotContain("Commit", source.Calls);
            Assert.Equal(JobResult.Cancelled, Assert.Single(catalog.GetJobs()).Outcome);
        }
    }

    [Theory]
    [InlineData("")]
    [InlineData("a\nb")]
    [InlineData("tab\there")]
    public void ANameThatCannotBeStoredIsRefusedBeforeAnythingIsWritten(string name)
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image }));
            Assert.ThrowsAny<ArgumentException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run(name, new CheckpointPlan()));
            Assert.Empty(source.Calls);
            Assert.Empty(catalog.GetJobs());
            Assert.Empty(t.Repository.ListCheckpoints());
        }
    }

    [Fact]
    public void AVeryLongVmNameIsRefusedAndTheRepositoryStaysUsable()
    {
        var (t, catalog, image) = Setup();
        using (t)
        using (catalog)
        {
            var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(new[] { image }));
            var e = Assert.Throws<ArgumentException>(() => new VmCheckpointJob(t.Repository, catalog, source).Run(new string('w', 5000), new CheckpointPlan()));
            Assert.Contains("at most 200", e.Message);
            Assert.Empty(t.Repository.ListCheckpoints());

            string longest = new string('w', VmNames.MaxUtf8Bytes);
            var m = new VmCheckpointJob(t.Repository, catalog, source).Run(longest, new CheckpointPlan());
            using var fresh = new CheckpointCatalog(t.File("fresh.db"));
            fresh.Synchronize(t.Repository, CancellationToken.None);
            Assert.Single(fresh.GetCheckpoints(t.Repository.Id), c => c.Id == m.Id);
        }
    }
}
