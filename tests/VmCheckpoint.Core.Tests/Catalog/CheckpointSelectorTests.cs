using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Catalog;

/// <summary>Which checkpoint a user means: the latest, an id or a unique prefix of one; never a guess.</summary>
public sealed class CheckpointSelectorTests
{
    [Fact]
    public void PicksTheLatestAnIdOrAUniquePrefix()
    {
        using var t = new TestRepository();
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        string image = t.File("vda.raw");
        ImageFiles.CreateRaw(image, 65536, (0, new byte[] { 1 }));
        var first = t.Checkpoint("vm", catalog, image);
        ImageFiles.Patch(image, (0, new byte[] { 2 }));
        var second = t.Checkpoint("vm", catalog, image);
        t.Checkpoint("other", catalog, image);
        catalog.Synchronize(t.Repository, CancellationToken.None);

        Assert.Equal(second.Id, CheckpointSelector.Select(catalog, t.Repository, "vm", null).Info.Id);
        Assert.Equal(first.Id, CheckpointSelector.Select(catalog, t.Repository, "vm", first.Id).File.Id);
        Assert.Equal(first.Id, CheckpointSelector.Select(catalog, t.Repository, "vm", first.Id.Substring(0, 8).ToUpperInvariant()).Info.Id);
    }

    [Fact]
    public void UnknownVmsIdsAndTooShortPrefixesAreNotFound()
    {
        using var t = new TestRepository();
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        string image = t.File("vda.raw");
        ImageFiles.CreateRaw(image, 65536, (0, new byte[] { 1 }));
        var m = t.Checkpoint("vm", catalog, image);
        catalog.Synchronize(t.Repository, CancellationToken.None);

        var none = Assert.Throws<CheckpointNotFoundException>(() => CheckpointSelector.Select(catalog, t.Repository, "ghost", null));
        Assert.Equal("ghost", none.Target);
        Assert.Throws<CheckpointNotFoundException>(() => CheckpointSelector.Select(catalog, t.Repository, "vm", "ffffffff"));
        Assert.Throws<CheckpointNotFoundException>(() => CheckpointSelector.Select(catalog, t.Repository, "vm", m.Id.Substring(0, 3)));
        Assert.Throws<CheckpointNotFoundException>(() => CheckpointSelector.Find(t.Repository, "ffffffff"));
    }

    [Fact]
    public void APrefixOfSeveralIsAmbiguous()
    {
        using var t = new TestRepository();
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        // Two indexed checkpoints whose ids share their first eight digits.
        foreach (var id in new[] { "abcd1234aaaa0000", "abcd1234bbbb0000" })
            catalog.AddCheckpoint(t.Repository, new CheckpointManifest { Id = id, VmName = "vm", StartTime = DateTime.UtcNow });

        var e = Assert.Throws<AmbiguousCheckpointIdException>(() => CheckpointSelector.Select(catalog, t.Repository, "vm", "abcd1234"));
        Assert.Contains("abcd1234aaaa0000", e.Message);
        Assert.Contains("give more of the id", e.Message);
    }
}
