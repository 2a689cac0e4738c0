using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Jobs;

/// <summary>
/// The disk-to-blocks step alone, on a real store: what is read, what is stored, what the block table says, with
/// and without changed ranges, across thread counts.
/// </summary>
public sealed class DiskUploaderTests
{
    private const int Block = TestRepository.BlockSize;

    private static (BlockTable Table, CheckpointStatistics Stats, FaultyDiskImage Image) Upload(TestRepository t, string path, BlockTable? parent,
        IReadOnlyList<DiskExtent>? changes, int workers)
    {
        var image = new FaultyDiskImage(DiskImage.Open(path, DiskFormat.Raw));
        var stats = new CheckpointStatistics();
        using var store = t.Repository.OpenStore(CancellationToken.None);
        var table = new DiskUploader(store, Block, workers).Upload(new DiskSource("d", image, changes), parent, stats, null, CancellationToken.None);
        store.Flush();
        image.Dispose();
        return (table, stats, image);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void StoresEachDataBlockOnceAndNoZeroBlock(int workers)
    {
        using var t = new TestRepository();
        string path = t.File("d.raw");
        var same = ImageFiles.Noise(1, Block);
        // Blocks 0 and 5 hold the same bytes, block 2 is written with zeros (allocated but zero), block 9 is a hole.
        ImageFiles.CreateRaw(path, 10L * Block, (0, same), (5L * Block, same), (2L * Block, new byte[Block]), (7L * Block + 100, new byte[] { 1 }));

        var (table, stats, image) = Upload(t, path, null, null, workers);

        Assert.Equal(3, table.Count);                         // blocks 0, 5, 7: the zero block and the holes are not in it
        Assert.Equal(table.Find(0), table.Find(5));
        Assert.Null(table.Find(2));
        Assert.Equal(2L * Block, stats.NewBytes);              // two distinct blocks stored
        Assert.DoesNotContain(9L * Block, image.ReadOffsets);  // holes are not read
    }

    [Fact]
    public void WithChangedRangesReadsOnlyThoseAndTakesTheRestFromTheParent()
    {
        using var t = new TestRepository();
        string path = t.File("d.raw");
        ImageFiles.CreateRaw(path, 8L * Block, (0, ImageFiles.Noise(2, 8 * Block)));
        var (parent, _, _) = Upload(t, path, null, null, 2);
        ImageFiles.Patch(path, (3L * Block + 10, new byte[] { 0xAA }));

        var (table, stats, image) = Upload(t, path, parent, new[] { new DiskExtent(3L * Block, 4096) }, 2);

        Assert.Equal(new[] { 3L * Block }, image.ReadOffsets.Distinct());
        Assert.Equal(8, table.Count);
        Assert.NotEqual(parent.Find(3), table.Find(3));
        for (long i = 0; i < 8; i++) if (i != 3) Assert.Equal(parent.Find(i), table.Find(i));
        Assert.Equal(Block, stats.NewBytes);
    }

    [Fact]
    public void AReadThatFailsFailsTheUploadAndStoresNoTable()
    {
        using var t = new TestRepository();
        string path = t.File("d.raw");
        ImageFiles.CreateRaw(path, 8L * Block, (0, ImageFiles.Noise(3, 8 * Block)));
        var image = new FaultyDiskImage(DiskImage.Open(path, DiskFormat.Raw), failAfterReads: 3);
        using var store = t.Repository.OpenStore(CancellationToken.None);
        var e = Assert.Throws<IOException>(() =>
            new DiskUploader(store, Block, 2).Upload(new DiskSource("d", image), null, new CheckpointStatistics(), null, CancellationToken.None));
        Assert.Contains("injected", e.Message);
        image.Dispose();
    }
}
