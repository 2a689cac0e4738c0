using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhd;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>
/// Differencing VHDs, built by hand from the specification (qemu cannot create them and reads one as if it had no
/// parent; Hyper-V does not run here), checked against what the builder wrote and against libvhdi.
/// </summary>
public sealed class VhdDifferencingTests
{
    private const long Size = 12L << 20;

    private static VhdBuilder Base(string path)
    {
        var parent = new VhdBuilder(VhdBuilder.Dynamic, Size);
        parent.Fill(0, 64 * 1024, 0x01);
        parent.Fill(2L << 20, 2L << 20, 0x02);   // a whole block
        parent.Fill(9L << 20, 512, 0x03);
        parent.Build(path);
        return parent;
    }

    private static VhdBuilder Child(VhdBuilder parent, string parentName)
    {
        var child = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = parent.UniqueId, ParentUnicodeName = parentName };
        child.Fill(4096, 8192, 0xa1);              // inside the parent's data: 16 sectors of block 0, bitmap partly set
        child.Fill((2L << 20) + 4096, 4096, 0x00); // zeros written over the parent's data hide it
        child.Fill(5L << 20, 2L << 20, 0xa2);      // across two blocks the parent never wrote
        child.Fill(Size - 512, 512, 0xa3);
        return child;
    }

    [Theory]
    [InlineData("W2ru", ".\\base.vhd")]
    [InlineData("W2ku", null)]          // the absolute path, as on the host that made it
    [InlineData("Wi2r", "base.vhd")]
    [InlineData("MacX", null)]
    [InlineData(null, null)]             // no locator: the parent's name in the child's folder
    public void ReadsThroughItsParent(string? code, string? locatorPath)
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        VhdBuilder parent = Base(basePath);
        VhdBuilder child = Child(parent, code == null ? "C:\\Hyper-V\\Disks\\base.vhd" : "base.vhd");
        if (code != null)
        {
            string text = locatorPath ?? (code == "MacX" ? "file://localhost" + Uri.EscapeDataString(basePath).Replace("%2F", "/") : basePath);
            child.Locators.Add((code, text));
        }
        string childPath = temp.File("child.avhd");
        child.Build(childPath);

        byte[] expected = child.GuestView(parent.GuestView());
        byte[] ours = VhdOracle.Ours(childPath);
        VhdOracle.AssertSame(expected, ours, "builder");
        VhdOracle.AssertSame(expected, VhdOracle.Libvhdi(childPath, basePath, temp), "libvhdi");

        using IDiskImage image = DiskImage.Open(childPath);
        var vhd = (VhdImage)image;
        Assert.Equal(basePath, vhd.Parent!.Path);
        // Nothing is reported where both are empty: 4-5 MiB and 10-12 MiB less the last sector.
        Assert.Empty(image.GetDataExtents(4L << 20, 1L << 20));
        Assert.Empty(image.GetDataExtents(10L << 20, (2L << 20) - 512));
    }

    [Fact]
    public void SingleSectorsComeFromTheChildAndTheirNeighboursFromTheParent()
    {
        // One bit per sector, the first sector in the most significant bit. libvhdi (20210425) reads every sector after
        // a set bit up to the end of that bitmap byte from the child, so it is no oracle below 4 KiB: the builder is.
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        VhdBuilder parent = Base(basePath);
        var child = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = parent.UniqueId };
        child.Locators.Add(("W2ru", ".\\base.vhd"));
        child.Fill(512, 1024, 0xd1);    // sectors 1 and 2
        child.Fill(5 * 512, 512, 0xd2); // sector 5
        child.Fill(15 * 512, 512, 0xd3);
        child.Fill((2L << 20) + 7 * 512, 512, 0x00);
        string childPath = temp.File("child.vhd");
        child.Build(childPath);
        VhdOracle.AssertSame(child.GuestView(parent.GuestView()), VhdOracle.Ours(childPath), "builder");
    }

    [Fact]
    public void AChainOfTwoDifferencingDisks()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        VhdBuilder grandparent = Base(basePath);
        VhdBuilder middle = Child(grandparent, "base.vhd");
        middle.Locators.Add(("W2ru", ".\\base.vhd"));
        string middlePath = temp.File("middle.avhd");
        middle.Build(middlePath);
        var top = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = middle.UniqueId, ParentUnicodeName = "middle.avhd" };
        top.Locators.Add(("W2ru", ".\\middle.avhd"));
        top.Fill(1024, 512, 0xb1);
        top.Fill(9L << 20, 4096, 0xb2);
        string topPath = temp.File("top.avhd");
        top.Build(topPath);

        byte[] expected = top.GuestView(middle.GuestView(grandparent.GuestView()));
        VhdOracle.AssertSame(expected, VhdOracle.Ours(topPath), "builder");
    }

    [Fact]
    public void AQemuMadeParent()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "force_size=on", basePath, "12M");
        Qemu.Io(basePath, "vpc", "write -P 0x71 0 3m", "write -P 0x72 8m 4k");
        Guid id;
        using (var parent = (VhdImage)DiskImage.Open(basePath)) id = parent.Footer.UniqueId;
        var child = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = id };
        child.Locators.Add(("W2ru", ".\\base.vhd"));
        child.Fill(2L << 20, 8192, 0xc1);
        string childPath = temp.File("child.vhd");
        child.Build(childPath);
        byte[] expected = child.GuestView(VhdOracle.Qemu(basePath, temp));
        VhdOracle.AssertSame(expected, VhdOracle.Ours(childPath), "qemu's parent and the builder's child");
        VhdOracle.AssertSame(expected, VhdOracle.Libvhdi(childPath, basePath, temp), "libvhdi");
    }

    [Fact]
    public void AMissingParentIsNamed()
    {
        using var temp = new TempFolder();
        var child = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = Guid.NewGuid(), ParentUnicodeName = "gone.vhd" };
        child.Locators.Add(("W2ru", ".\\gone.vhd"));
        string childPath = temp.File("child.vhd");
        child.Build(childPath);
        var e = Assert.Throws<FileNotFoundException>(() => DiskImage.Open(childPath));
        Assert.Contains("gone.vhd", e.Message);
        Assert.Contains(childPath, e.Message);
    }

    [Fact]
    public void AParentThatIsAnotherDiskIsRefused()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        VhdBuilder parent = Base(basePath);
        VhdBuilder child = Child(parent, "base.vhd");
        child.ParentUniqueId = Guid.NewGuid();
        child.Locators.Add(("W2ru", ".\\base.vhd"));
        string childPath = temp.File("child.vhd");
        child.Build(childPath);
        var e = Assert.Throws<CorruptImageException>(() => DiskImage.Open(childPath));
        Assert.Contains("unique id", e.Message);
        Assert.Equal(childPath, e.ImagePath);
    }

    [Fact]
    public void AParentThatIsNotAVhdIsRefused()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        Qemu.Img("create", "-q", "-f", "qcow2", basePath, "12M");
        var child = new VhdBuilder(VhdBuilder.Differencing, Size) { ParentUniqueId = Guid.NewGuid() };
        child.Locators.Add(("W2ru", ".\\base.vhd"));
        string childPath = temp.File("child.vhd");
        child.Build(childPath);
        var e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(childPath));
        Assert.Equal("qcow2", e.FoundFormat);
    }

    [Fact]
    public void ALoopIsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("self.vhd");
        var child = new VhdBuilder(VhdBuilder.Differencing, Size);
        child.ParentUniqueId = child.UniqueId;
        child.Locators.Add(("W2ru", ".\\self.vhd"));
        child.Build(path);
        Assert.Contains("loops", Assert.Throws<CorruptImageException>(() => DiskImage.Open(path)).Message);
    }

    [Fact]
    public void ALocatorPastTheEndOfTheFileIsRefused()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        VhdBuilder parent = Base(basePath);
        VhdBuilder child = Child(parent, "base.vhd");
        child.Locators.Add(("W2ru", ".\\base.vhd"));
        string path = temp.File("child.vhd");
        child.Build(path);
        // Locator 0's data offset (header at 512, locators at 576, offset field at +16), pointed far past the end.
        byte[] header = File.ReadAllBytes(path).AsSpan(512, 1024).ToArray();
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(576 + 16), 1UL << 40);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(36), VhdBuilder.Checksum(header, 36));
        HeaderPatch.SetBytes(path, 512, header);
        Assert.Contains("past the end", Assert.Throws<CorruptImageException>(() => DiskImage.Open(path)).Message);
    }
}
