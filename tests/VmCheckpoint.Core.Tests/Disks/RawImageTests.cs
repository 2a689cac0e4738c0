using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

public sealed class RawImageTests
{
    private const long MiB = 1024 * 1024;

    [Fact]
    public void SparseRawReportsOnlyItsDataAndMatchesQemu()
    {
        using var temp = new TempFolder();
        string path = temp.File("sparse.raw");
        using (var f = new FileStream(path, FileMode.CreateNew))
        {
            f.SetLength(16 * MiB);
            var block = Enumerable.Range(0, 64 * 1024).Select(i => (byte)(i % 251 + 1)).ToArray();
            f.Position = 0; f.Write(block, 0, 512);
            f.Position = 5 * MiB; f.Write(block);
            f.Position = 16 * MiB - 512; f.Write(block, 0, 512);
        }

        List<DiskExtent> extents = GuestView.AssertMatchesQemu(path, "raw", temp);
        Assert.True(extents.Sum(e => e.Length) <= 1 * MiB, $"extents of a mostly empty raw file: {string.Join(", ", extents)}");
        Assert.Contains(extents, e => e.Offset <= 5 * MiB && e.End >= 5 * MiB + 64 * 1024);
    }

    [Fact]
    public void OddSizedRawAndUnknownContentOpenAsRaw()
    {
        using var temp = new TempFolder();
        string path = temp.File("odd.img");
        var bytes = new byte[5 * MiB + 512];
        bytes[0] = (byte)'Q'; // not the whole magic
        bytes[^1] = 0xee;
        File.WriteAllBytes(path, bytes);
        using var image = DiskImage.Open(path);
        Assert.Equal(DiskFormat.Raw, image.Format);
        Assert.Equal(bytes.Length, image.VirtualSize);
        GuestView.AssertMatchesQemu(path, "raw", temp);
    }

    [Fact]
    public void VhdxSignatureIsDetectedByContentNotTakenForRaw()
    {
        using var temp = new TempFolder();
        string path = temp.File("disk.bin");
        var bytes = new byte[1024];
        "vhdxfile"u8.ToArray().CopyTo(bytes, 0);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<CorruptImageException>(() => DiskImage.Open(path));
        Assert.Contains(path, e.Message);
        using (var writer = DiskImage.Create(temp.File("new.vhdx"), DiskFormat.Vhdx, MiB))
        {
            Assert.Equal(DiskFormat.Vhdx, writer.Format);
            writer.Complete();
        }
        using var reopened = DiskImage.Open(temp.File("new.vhdx"));
        Assert.Equal(DiskFormat.Vhdx, reopened.Format);
        Assert.Equal(MiB, reopened.VirtualSize);
    }

    [Fact]
    public void EmptyFileIsAnEmptyRawDisk()
    {
        using var temp = new TempFolder();
        string path = temp.File("empty.raw");
        File.WriteAllBytes(path, []);
        using var image = DiskImage.Open(path);
        Assert.Equal(0, image.VirtualSize);
        Assert.Empty(image.GetDataExtents(0, 0));
    }
}
