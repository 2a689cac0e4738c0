using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhd;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>Dynamic VHDs written for restores, read back by qemu, libvhdi and our reader.</summary>
public sealed class VhdWriterTests
{
    [Theory]
    [InlineData(10L << 20)]              // no CHS size: the largest geometry sends readers to current_size
    [InlineData(1360L * 512)]            // exactly 20 x 4 x 17: the specification's geometry
    [InlineData((5L << 20) + 512)]
    public void WrittenDisksReadBackEverywhere(long size)
    {
        using var temp = new TempFolder();
        string source = temp.File("source.raw");
        var data = new byte[size];
        var random = new Random((int)(size % 100000));
        foreach (long at in new long[] { 0, 70_000, 2L << 20, (2L << 20) + 4096, size - 512 }.Where(a => a < size))
        {
            int n = (int)Math.Min(100_000, size - at);
            random.NextBytes(data.AsSpan((int)at, n));
        }
        File.WriteAllBytes(source, data);

        string path = temp.File("restored.vhd");
        using (IDiskImage raw = DiskImage.Open(source))
        using (IDiskImageWriter writer = DiskImage.Create(path, DiskFormat.Vhd, size))
        {
            Assert.Equal(DiskFormat.Vhd, writer.Format);
            GuestView.Copy(raw, writer, 300_000);
        }

        Assert.Equal(size, VhdOracle.QemuSize(path));
        VhdOracle.AssertSame(data, VhdOracle.Qemu(path, temp), "qemu");
        VhdOracle.AssertSame(data, VhdOracle.Libvhdi(path, null, temp), "libvhdi");
        VhdOracle.AssertSame(data, VhdOracle.Ours(path), "ours");

        // Sparse: only the blocks written were allocated (blocks 0 and 1, and the last).
        using var image = (VhdImage)DiskImage.Open(path);
        long blocks = (size + VhdImageWriter.BlockSize - 1) / VhdImageWriter.BlockSize;
        Assert.True(new FileInfo(path).Length <= Math.Min(blocks, 3) * (VhdImageWriter.BlockSize + 8192) + 8192, $"{new FileInfo(path).Length} bytes");
    }

    [Fact]
    public void AnUnfinishedFileIsNotAVhd()
    {
        using var temp = new TempFolder();
        string path = temp.File("partial.vhd");
        using (IDiskImageWriter writer = DiskImage.Create(path, DiskFormat.Vhd, 4L << 20))
        {
            writer.Write(0, Enumerable.Repeat((byte)7, 1 << 20).ToArray(), 0, 1 << 20);
        }

        Assert.Throws<ImageFormatException>(() => DiskImage.Open(path));
    }

    [Theory]
    [InlineData(1000L)]
    [InlineData(VmCheckpoint.Core.Disks.Vhd.VhdFormat.MaxVirtualSize + 512)]
    public void SizesAVhdCannotHaveAreRefused(long size)
    {
        using var temp = new TempFolder();
        Assert.Throws<ArgumentOutOfRangeException>(() => DiskImage.Create(temp.File("x.vhd"), DiskFormat.Vhd, size));
        Assert.False(File.Exists(temp.File("x.vhd")));
    }
}
