using System.Text;
using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>
/// Which format a file is read in (qemu-img's -f, or its name, or its content), and that a file of another or an
/// unread format is refused naming what it is, never read as raw.
/// </summary>
public sealed class ImageFormatTests
{
    private static string Qcow2(TempFolder temp, string name)
    {
        string path = temp.File(name);
        Qemu.Img("create", "-q", "-f", "qcow2", path, "1M");
        Qemu.Io(path, "qcow2", "write -P 0x5a 0 64k");
        return path;
    }

    private static string RandomBytes(TempFolder temp, string name, int length = 1 << 20)
    {
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        string path = temp.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Theory]
    [InlineData("x.qcow2", "qcow2")]
    [InlineData("x.qcow", "qcow2")]
    [InlineData("x.vhdx", "VHDX")]
    [InlineData("x.avhdx", "VHDX")]
    [InlineData("x.vhd", "VHD")]
    [InlineData("x.AVHD", "VHD")]
    public void RandomBytesUnderAFormatsNameAreRefused(string name, string expected)
    {
        using var temp = new TempFolder();
        string path = RandomBytes(temp, name);
        var e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(path));
        Assert.Equal(expected, e.ExpectedFormat);
        Assert.Equal("raw data", e.FoundFormat);
        Assert.Equal(path, e.ImagePath);
        Assert.Contains(path, e.Message);
        Assert.IsAssignableFrom<CorruptImageException>(e); // mapped to InvalidData like every damaged image
    }

    [Theory]
    [InlineData("x.img")]
    [InlineData("x.bin")]
    [InlineData("x")]
    [InlineData("x.raw")]
    [InlineData("x.iso")]
    public void RandomBytesUnderOtherNamesAreRaw(string name)
    {
        using var temp = new TempFolder();
        string path = RandomBytes(temp, name);
        using IDiskImage image = DiskImage.Open(path);
        Assert.Equal(DiskFormat.Raw, image.Format);
        Assert.Empty(DiskImage.GetWarnings(image));
    }

    [Fact]
    public void ContentDecidesForNamesThatNameNoFormat()
    {
        using var temp = new TempFolder();
        string img = Qcow2(temp, "disk.img");
        using (IDiskImage image = DiskImage.Open(img)) Assert.Equal(DiskFormat.Qcow2, image.Format);

        string vhd = temp.File("disk.bin");
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "subformat=fixed", vhd, "1M");
        using (IDiskImage image = DiskImage.Open(vhd)) Assert.Equal(DiskFormat.Vhd, image.Format);
    }

    [Fact]
    public void ARawNameIsReadAsRawWhateverItHoldsAndSaysSo()
    {
        using var temp = new TempFolder();
        string path = Qcow2(temp, "disk.raw");
        using IDiskImage image = DiskImage.Open(path);
        Assert.Equal(DiskFormat.Raw, image.Format);
        Assert.Equal(new FileInfo(path).Length, image.VirtualSize);
        string warning = Assert.Single(DiskImage.GetWarnings(image));
        Assert.Contains("qcow2", warning);
        Assert.Contains(path, warning);

        // Asked for explicitly, it is what it is.
        using IDiskImage asQcow2 = DiskImage.Open(path, DiskFormat.Qcow2);
        Assert.Equal(DiskFormat.Qcow2, asQcow2.Format);
    }

    [Fact]
    public void AGivenFormatOverridesTheName()
    {
        using var temp = new TempFolder();
        string qcow2 = Qcow2(temp, "disk.vhd");
        Assert.Throws<ImageFormatException>(() => DiskImage.Open(qcow2));
        using (IDiskImage image = DiskImage.Open(qcow2, DiskFormat.Qcow2)) Assert.Equal(DiskFormat.Qcow2, image.Format);
        using (IDiskImage image = DiskImage.Open(qcow2, DiskFormat.Raw))
        {
            Assert.Equal(DiskFormat.Raw, image.Format);
            Assert.Empty(DiskImage.GetWarnings(image)); // raw was asked for: nothing to say
        }

        var e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(qcow2, DiskFormat.Vhdx));
        Assert.Equal("VHDX", e.ExpectedFormat);
        Assert.Equal("qcow2", e.FoundFormat);
        e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(qcow2, DiskFormat.Vhd));
        Assert.Equal("qcow2", e.FoundFormat);

        string raw = RandomBytes(temp, "random.img");
        e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(raw, DiskFormat.Qcow2));
        Assert.Equal("raw data", e.FoundFormat);
    }

    public static TheoryData<string, string, string[]> QemuFormats => new()
    {
        { "vmdk", "VMDK", new[] { "-f", "vmdk" } },
        { "vdi", "VDI", new[] { "-f", "vdi" } },
        { "hdd", "parallels", new[] { "-f", "parallels" } },
        { "qed", "QED", new[] { "-f", "qed" } },
        { "qcow", "qcow (version 1)", new[] { "-f", "qcow" } },
        { "luks", "LUKS", new[] { "--object", "secret,id=sec0,data=abc", "-f", "luks", "-o", "key-secret=sec0,iter-time=10" } },
    };

    [Theory]
    [MemberData(nameof(QemuFormats))]
    public void FormatsNotReadAreRefusedNamingTheFormat(string extension, string format, string[] create)
    {
        using var temp = new TempFolder();
        string path = temp.File("disk." + extension);
        Qemu.Img(new[] { "create", "-q" }.Concat(create).Concat(new[] { path, "4M" }).ToArray());

        var e = Assert.ThrowsAny<ImageFormatException>(() => DiskImage.Open(path));
        Assert.Equal(format, e.FoundFormat);
        Assert.Contains(format + " images are not read", e.Message);
        Assert.Contains("qemu-img convert", e.Message);

        // The content gives it away under any name that names no format...
        string img = temp.File("disk.img");
        File.Copy(path, img);
        e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(img));
        Assert.Equal(format, e.FoundFormat);
        Assert.Null(e.ExpectedFormat);

        // ... and under a qcow2 name it is not a qcow2.
        string named = temp.File("disk.qcow2");
        File.Copy(path, named);
        e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(named));
        Assert.Equal("qcow2", e.ExpectedFormat);
        Assert.Equal(format, e.FoundFormat);

        // Only raw, asked for, stores its bytes as they are.
        using IDiskImage image = DiskImage.Open(path, DiskFormat.Raw);
        Assert.Equal(new FileInfo(path).Length, image.VirtualSize);
    }

    [Fact]
    public void AVmdkDescriptorAndItsFlatExtentAreRefused()
    {
        using var temp = new TempFolder();
        string descriptor = temp.File("flat.vmdk");
        Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", descriptor, "4M");
        Assert.Equal("VMDK", Assert.Throws<ImageFormatException>(() => DiskImage.Open(descriptor)).FoundFormat);
        // The extent holds raw data, but its name says VMDK: still not read unless raw is asked for.
        string extent = temp.File("flat-flat.vmdk");
        Assert.Throws<ImageFormatException>(() => DiskImage.Open(extent));
        using IDiskImage image = DiskImage.Open(extent, DiskFormat.Raw);
        Assert.Equal(4L << 20, image.VirtualSize);
    }

    [Theory]
    [InlineData("DMG")]
    [InlineData("cloop")]
    [InlineData("bochs")]
    [InlineData("VMDK")]
    public void SignaturesOfOtherFormatsAreRecognised(string format)
    {
        using var temp = new TempFolder();
        var bytes = new byte[64 * 1024];
        byte[] signature = Encoding.ASCII.GetBytes(format switch
        {
            "DMG" => "koly",
            "cloop" => "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$1 && mount -r -t iso9660 /dev/cloop $2\n",
            "bochs" => "Bochs Virtual HD Image",
            _ => "COWD",
        });
        signature.CopyTo(bytes, format == "DMG" ? bytes.Length - 512 : 0);
        string path = temp.File("disk.img");
        File.WriteAllBytes(path, bytes);
        Assert.Equal(format, Assert.Throws<ImageFormatException>(() => DiskImage.Open(path)).FoundFormat);
    }

    [Fact]
    public void AFileNamedForAnotherFormatIsRefusedNamingBoth()
    {
        using var temp = new TempFolder();
        string path = Qcow2(temp, "disk.vmdk");
        var e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(path));
        Assert.Equal("VMDK", e.ExpectedFormat);
        Assert.Equal("qcow2", e.FoundFormat);
        using IDiskImage image = DiskImage.Open(path, DiskFormat.Qcow2);
        Assert.Equal(DiskFormat.Qcow2, image.Format);
    }

    [Fact]
    public void ABackingFileIsHeldToItsRecordedFormat()
    {
        using var temp = new TempFolder();
        string vmdk = temp.File("base.vmdk");
        Qemu.Img("create", "-q", "-f", "vmdk", vmdk, "1M");
        string top = temp.File("top.qcow2");
        // The header records no backing format: the backing file's own name and content must agree, as for any file.
        Qemu.Img("create", "-q", "-f", "qcow2", "-u", "-b", "base.vmdk", "-F", "vmdk", top, "1M");
        var e = Assert.ThrowsAny<CorruptImageException>(() => DiskImage.Open(top));
        Assert.Contains("vmdk", e.Message, StringComparison.OrdinalIgnoreCase);

        string fakeQcow2 = temp.File("base.qcow2");
        File.WriteAllBytes(fakeQcow2, new byte[1 << 20]);
        string top2 = temp.File("top2.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2", top2, "1M");
        e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(top2));
        Assert.Equal(fakeQcow2, e.ImagePath);
        Assert.Contains(top2, e.Message);
    }
}
