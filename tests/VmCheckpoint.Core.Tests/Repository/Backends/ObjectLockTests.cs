using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Repository.Backends;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>
/// Retention by S3 Object Lock on the real radosgw: reclaiming never tries to delete what the store still keeps.
/// Compliance mode keeps these small objects in the test Ceph for a day; nothing can remove them sooner.
/// </summary>
public sealed class ObjectLockTests : IDisposable
{
    private readonly TempFolder _temp = new();

    [Fact]
    public void AReclaimLeavesARetainedPackThatNoCheckpointUsesWhole()
    {
        var gateway = S3Gateway.Instance;
        var location = S3Location.Parse($"s3://xunit-lock-{Guid.NewGuid():N}".Substring(0, 5 + 11 + 20) + "/repo");
        var backend = S3Backend.Connect(location, new S3Settings(gateway.Endpoint, null), gateway.Credentials);
        var repository = CheckpointRepository.Create(backend, 64 * 1024, retainDays: 1);
        Assert.Equal(1, CheckpointRepository.Open(S3Backend.Connect(location, new S3Settings(gateway.Endpoint, null), gateway.Credentials)).Config.RetainDays);

        string image = _temp.File("disk.raw");
        ImageFiles.CreateRaw(image, 1 << 20, (0, ImageFiles.Noise(7, 200_000)));
        var disks = ImageFileSource.OpenDiskFiles(new[] { image });
        CheckpointManifest manifest;
        try { manifest = new CheckpointJob(repository, null).Run(new CheckpointRequest("locked", disks)); }
        finally { foreach (var d in disks) d.Image.Dispose(); }

        var pack = Assert.Single(backend.List(RepositoryLayout.PacksPrefix));
        var manifestFile = Assert.Single(repository.ListCheckpoints());
        Assert.True(backend.GetInfo(pack.Name)!.IsRetained(DateTime.UtcNow.AddHours(23)));
        Assert.True(backend.GetInfo(manifestFile.Name)!.IsRetained(DateTime.UtcNow.AddHours(23)));

        // Removing the checkpoint is refused while it is retained, and nothing changes.
        Assert.Throws<CheckpointRetainedException>(() => repository.DeleteCheckpoint(manifestFile));
        Assert.Single(repository.ListCheckpoints());

        // Hide the manifest behind a delete marker (what a plain S3 DELETE does in a versioned bucket): its pack is now
        // used by no checkpoint, yet retained. Reclaiming keeps it, listed and whole.
        backend.RetainFor = null;
        backend.Delete(manifestFile.Name);
        backend.RetainFor = TimeSpan.FromDays(1);
        Assert.Empty(repository.ListCheckpoints());
        var result = new Pruner(repository).Reclaim(TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.True(result.Completed);
        Assert.Equal(1, result.PacksRetained);
        Assert.Equal(0, result.PacksDeleted);
        Assert.Equal(pack.Length, backend.GetInfo(pack.Name)!.Length);
        using var store = repository.OpenStore(CancellationToken.None);
        Assert.Contains(store.PackContents.Keys, id => pack.Name.Contains(id));
    }

    public void Dispose() => _temp.Dispose();
}
