using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Catalog;

/// <summary>A manifest the catalog cannot index (written by an older version with a name past LiteDB's key limit).</summary>
public sealed class UnindexableManifestTests
{
    [Fact]
    public void IsSkippedAndReportedAndTheRepositoryStaysUsable()
    {
        using var t = new TestRepository();
        string image = t.File("vda.raw");
        ImageFiles.CreateRaw(image, 65536, (0, new byte[] { 1 }));
        var good = t.Checkpoint("vm", image);
        // As an older version wrote it: nothing checked the name's length then.
        var old = t.Repository.ReadCheckpoint(t.FileOf(good.Id));
        old.VmName = new string('w', 5000);
        old.Id = "";
        t.Repository.SaveCheckpoint(old);

        using var catalog = new CheckpointCatalog(t.File("fresh.db"));
        var result = catalog.Synchronize(t.Repository, CancellationToken.None);

        Assert.Single(result.Unreadable);
        Assert.Contains(catalog.GetCheckpoints(t.Repository.Id), c => c.Id == good.Id);
        ImageFiles.Patch(image, (0, new byte[] { 2 }));
        var next = t.Checkpoint("vm", catalog, image);
        Assert.Contains(catalog.GetCheckpoints(t.Repository.Id), c => c.Id == next.Id);
        Assert.Single(catalog.Synchronize(t.Repository, CancellationToken.None).Unreadable);
    }
}
