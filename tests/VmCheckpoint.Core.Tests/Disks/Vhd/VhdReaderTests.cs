using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhd;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>VHDs made by qemu-img and by hand from the specification, read and compared with qemu and libvhdi.</summary>
public sealed class VhdReaderTests
{
    private static readonly string[] Writes =
    {
        "write -P 0x11 0 512",
        "write -P 0x12 5000 3000",
        "write -P 0x13 1m 200k",
        "write -P 0x14 2m 4k",
        "write -P 0x15 7m 1m",
    };

    [Theory]
    [InlineData("dynamic", false)]
    [InlineData("dynamic", true)]
    [InlineData("fixed", false)]
    [InlineData("fixed", true)]
    public void QemuImagesReadAsQemuReadsThem(string subformat, bool forceSize)
    {
        using var temp = new TempFolder();
        string path = temp.File("disk.vhd");
        // 10 MiB is no CHS size: without force_size qemu rounds the disk up to one (creator "qemu", sized by geometry).
        Qemu.Img("create", "-q", "-f", "vpc", "-o", $"subformat={subformat},force_size={(forceSize ? "on" : "off")}", path, "10M");
        Qemu.Io(path, "vpc", Writes);
        byte[] ours = VhdOracle.Ours(path);
        Assert.Equal(VhdOracle.QemuSize(path), ours.Length);
        VhdOracle.AssertSame(VhdOracle.Qemu(path, temp), ours, "qemu");
        VhdOracle.AssertSame(VhdOracle.Libvhdi(path, null, temp), ours, "libvhdi");

        using IDiskImage image = DiskImage.Open(path);
        Assert.Empty(DiskImage.GetWarnings(image));
        if (subformat == "dynamic")
        {
            // Only the blocks written: 0-2 MiB, 2-4 MiB and 6-8 MiB of 2 MiB blocks, less the holes qemu left in them.
            List<DiskExtent> extents = image.GetDataExtents(0, image.VirtualSize).ToList();
            Assert.All(extents, e => Assert.True(e.End <= 4L << 20 || (e.Offset >= 6L << 20 && e.End <= 8L << 20), $"extent {e}"));
            Assert.True(extents.Sum(e => e.Length) < 3L << 20, "holes were reported as data");
        }
    }

    [Fact]
    public void AnEmptyDynamicDiskHasNoData()
    {
        using var temp = new TempFolder();
        string path = temp.File("empty.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", path, "64M");
        using IDiskImage image = DiskImage.Open(path);
        Assert.Empty(image.GetDataExtents(0, image.VirtualSize));
        Assert.Equal(VhdOracle.QemuSize(path), image.VirtualSize);
    }

    public static TheoryData<string, int, int?> Creators => new()
    {
        // creator, geometry (C*H*S sectors, or null for the largest geometry), expected size in sectors (null: current_size)
        { "vpc ", 0, 0 },      // Virtual PC: sized by its geometry, smaller than current_size
        { "qemu", 0, 0 },
        { "win ", 0, null },   // Hyper-V, disk2vhd, XenServer, XenConverter and qemu's force_size: current_size
        { "d2v ", 0, null },
        { "tap\0", 0, null },
        { "CTXS", 0, null },
        { "qem2", 0, null },
        { "vpc ", -1, null },  // the largest geometry says nothing: current_size
    };

    [Theory]
    [MemberData(nameof(Creators))]
    public void TheSizeIsTakenAsQemuTakesIt(string creator, int geometry, int? expectChs)
    {
        using var temp = new TempFolder();
        foreach (int type in new[] { VhdBuilder.Fixed, VhdBuilder.Dynamic })
        {
            // 20 cylinders x 4 heads x 17 sectors = 1360 sectors, less than the 4 MiB current_size.
            var builder = new VhdBuilder(type, 4L << 20) { Creator = creator, Geometry = geometry == -1 ? null : (20, 4, 17) };
            builder.Fill(0, 4096, 0x21);
            builder.Fill(600 * 1024, 512, 0x22);
            builder.Fill((4L << 20) - 512, 512, 0x23); // past the geometry's size: only current_size readers see it
            string path = temp.File($"{type}.vhd");
            builder.Build(path);
            byte[] ours = VhdOracle.Ours(path);
            long expected = expectChs == null ? 4L << 20 : 1360 * 512;
            Assert.Equal(expected, ours.Length);
            Assert.Equal(VhdOracle.QemuSize(path), ours.Length);
            VhdOracle.AssertSame(VhdOracle.Qemu(path, temp), ours, $"qemu, type {type}");
            VhdOracle.AssertSame(builder.GuestView().AsSpan(0, (int)expected).ToArray(), ours, $"builder, type {type}");
        }
    }

    [Theory]
    [InlineData(512 * 1024)]
    [InlineData(4096)]
    [InlineData(32 * 1024 * 1024)]
    public void OtherBlockSizes(int blockSize)
    {
        using var temp = new TempFolder();
        var builder = new VhdBuilder(VhdBuilder.Dynamic, 40L << 20) { BlockSize = blockSize };
        builder.Fill(0, 8192, 0x31);
        builder.Fill(3L << 20, 1 << 20, 0x32);
        builder.Fill((40L << 20) - 1024, 1024, 0x33);
        string path = temp.File("blocks.vhd");
        builder.Build(path);
        byte[] ours = VhdOracle.Ours(path);
        VhdOracle.AssertSame(builder.GuestView(), ours, "builder");
        VhdOracle.AssertSame(VhdOracle.Qemu(path, temp), ours, "qemu");
        VhdOracle.AssertSame(VhdOracle.Libvhdi(path, null, temp), ours, "libvhdi");
    }

    [Fact]
    public void UnwrittenSectorsOfAnAllocatedBlockReadAsZero()
    {
        // Hyper-V marks only the sectors it wrote; the rest of the block is zeros in the file.
        using var temp = new TempFolder();
        var builder = new VhdBuilder(VhdBuilder.Dynamic, 8L << 20);
        builder.Fill(4096, 512, 0x41);
        builder.Fill(9000 * 512, 1024, 0x42);
        builder.EmptyBlocks.Add(3);
        string path = temp.File("sparse-bitmap.vhd");
        builder.Build(path);
        byte[] ours = VhdOracle.Ours(path);
        VhdOracle.AssertSame(builder.GuestView(), ours, "builder");
        VhdOracle.AssertSame(VhdOracle.Qemu(path, temp), ours, "qemu");
        VhdOracle.AssertSame(VhdOracle.Libvhdi(path, null, temp), ours, "libvhdi");
    }

    [Fact]
    public void DataInSectorsTheBitmapCallsUnwrittenIsRefused()
    {
        // qemu reads those bytes, Windows (and libvhdi) zeros: there is no one right answer, so there is none.
        using var temp = new TempFolder();
        var builder = new VhdBuilder(VhdBuilder.Dynamic, 4L << 20);
        builder.Fill(0, 512, 0x51);
        builder.Unmarked[8] = Enumerable.Repeat((byte)0x66, 512).ToArray();
        string path = temp.File("disagree.vhd");
        builder.Build(path);
        using IDiskImage image = DiskImage.Open(path);
        var buffer = new byte[8192];
        image.Read(0, buffer, 0, 4096); // the written sector and unwritten zeros are fine
        var e = Assert.Throws<CorruptImageException>(() => image.Read(0, buffer, 0, 8192));
        Assert.Contains("bitmap", e.Message);
        Assert.Equal(path, e.ImagePath);
    }

    [Fact]
    public void TheFooterCopyServesWhenTheFooterAtTheEndIsGone()
    {
        using var temp = new TempFolder();
        string path = temp.File("nofooter.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", path, "8M");
        Qemu.Io(path, "vpc", "write -P 0x61 1m 64k");
        byte[] truth = VhdOracle.Qemu(path, temp);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(f.Length - 512);
        using IDiskImage image = DiskImage.Open(path);
        Assert.Contains("footer at the end", Assert.Single(DiskImage.GetWarnings(image)));
        VhdOracle.AssertSame(truth, VmCheckpoint.Core.Tests.Vhdx.ImageBytes.ReadAll(image), "qemu before the cut");
        VhdOracle.AssertSame(VhdOracle.Qemu(path, temp), truth, "qemu after the cut");
    }
}
