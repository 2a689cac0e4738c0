using Xunit;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Tests.Vhdx;

public sealed class VhdxReaderTests
{
    [Theory]
    [InlineData("dynamic", "1M", 5L * 1024 * 1024 + 512, "on")]
    [InlineData("dynamic", "8M", 20L * 1024 * 1024 - 3 * 512, "on")]
    [InlineData("dynamic", "8M", 17L * 1024 * 1024 + 4096, "off")]
    [InlineData("dynamic", "32M", 70L * 1024 * 1024 + 4096, "on")]
    [InlineData("dynamic", "256M", 300L * 1024 * 1024, "on")]
    [InlineData("fixed", "1M", 3L * 1024 * 1024 + 512, "on")]
    [InlineData("fixed", "8M", 9L * 1024 * 1024, "on")]
    public void Reads_the_guest_view_qemu_wrote(string subformat, string blockSize, long size, string zeroState)
    {
        using var temp = new TempFolder();
        string image = temp.File("disk.vhdx");
        Tool.Run("qemu-img", "create", "-q", "-f", "vhdx", "-o", $"subformat={subformat},block_size={blockSize},block_state_zero={zeroState}", image, size.ToString());
        Tool.QemuIo(image, "write -P 0x5a 0 512");
        Tool.QemuIo(image, $"write -P 0xa5 {size - 512} 512");
        Tool.QemuIo(image, $"write -P 0x33 {size / 3 / 512 * 512} 12800");
        Tool.QemuIo(image, $"write -P 0x44 {1024 * 1024 - 1024} 4096"); // across a 1 MiB block boundary
        Tool.QemuIo(image, $"write -z {1024 * 1024} 512");

        string raw = temp.File("disk.raw");
        using (VhdxImage vhdx = VhdxImage.Open(image))
        {
            Assert.Equal(size, vhdx.VirtualSize);
            Assert.Equal(DiskFormat.Vhdx, vhdx.Format);
            byte[] data = ImageBytes.ReadAll(vhdx);
            File.WriteAllBytes(raw, data);
            ImageBytes.AssertExtentsCover(vhdx, data);
            if (subformat == "dynamic" && blockSize != "256M")
                Assert.True(vhdx.GetDataExtents(0, size).Sum(e => e.Length) < size, "a sparse disk reports less data than its size");

            // An unaligned read crossing a block boundary matches the whole-disk read.
            var piece = new byte[5000];
            vhdx.Read(1024 * 1024 - 2000, piece, 0, piece.Length);
            Assert.Equal(data.AsSpan(1024 * 1024 - 2000, 5000).ToArray(), piece);
            Assert.Throws<ArgumentOutOfRangeException>(() => vhdx.Read(size - 10, new byte[20], 0, 20));
        }
        Tool.Run("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", raw, image);
    }

    [Fact]
    public void A_block_allocated_for_one_small_write_reports_only_that_write_as_data()
    {
        // qemu allocates a whole payload block for a write and leaves its unwritten sectors as holes of the file:
        // those read as zeros and must not be read at all (a sparse disk costs the time of its data).
        using var temp = new TempFolder();
        string image = temp.File("sparse-blocks.vhdx");
        Tool.Run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "subformat=dynamic,block_size=32M", image, (256L * 1024 * 1024).ToString());
        Tool.QemuIo(image, $"write -P 0x6b {40 * 1024 * 1024 + 4096} {1024 * 1024}");
        Tool.QemuIo(image, $"write -P 0x6c {200 * 1024 * 1024} 4096");
        using VhdxImage vhdx = VhdxImage.Open(image);
        long data = vhdx.GetDataExtents(0, vhdx.VirtualSize).Sum(e => e.Length);
        Assert.InRange(data, 1024 * 1024 + 4096, 2 * 1024 * 1024);
        ImageBytes.AssertExtentsCover(vhdx, ImageBytes.ReadAll(vhdx));
    }
}
