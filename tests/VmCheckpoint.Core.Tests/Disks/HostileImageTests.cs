using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Real qcow2 images with one field made hostile: each must fail with an error naming the file.</summary>
public sealed class HostileImageTests
{
    /// <summary>A 4 MiB image with 64 KiB clusters and some data; returns its path.</summary>
    private static string MakeImage(TempFolder temp, string options = "")
    {
        string path = temp.File("victim.qcow2");
        Qemu.CreateQcow2(path, options, "4M");
        Qemu.Io(path, "qcow2", "write -P 0x11 0 128k", "write -P 0x12 3m 64k");
        return path;
    }

    /// <summary>Opens and reads everything; the failure must be a CorruptImageException (or a kind of it) naming the file.</summary>
    private static CorruptImageException AssertCorrupt(string path)
    {
        var e = Assert.ThrowsAny<CorruptImageException>(() => ReadEverything(path));
        Assert.Equal(path, e.ImagePath);
        Assert.Contains(path, e.Message);
        return e;
    }

    internal static void ReadEverything(string path)
    {
        using IDiskImage image = DiskImage.Open(path);
        _ = image.GetDataExtents(0, image.VirtualSize).ToList();
        var buffer = new byte[1024 * 1024];
        for (long pos = 0; pos < image.VirtualSize; pos += buffer.Length)
        {
            image.Read(pos, buffer, 0, (int)Math.Min(buffer.Length, image.VirtualSize - pos));
        }
    }

    [Fact]
    public void BadMagicIsRefusedNotReadAsRaw()
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        HeaderPatch.SetUInt32(path, MagicOffset, 0x514649fc);
        var e = Assert.Throws<ImageFormatException>(() => DiskImage.Open(path));
        Assert.Equal("qcow2", e.ExpectedFormat);
        Assert.Equal("raw data", e.FoundFormat);
        Assert.Equal(path, e.ImagePath);

        // Under a name that names no format, the same bytes are raw data; asked for as raw, they are raw.
        string renamed = temp.File("victim.img");
        File.Copy(path, renamed);
        using (var image = DiskImage.Open(renamed)) Assert.Equal(DiskFormat.Raw, image.Format);
        using (var image = DiskImage.Open(path, DiskFormat.Raw)) Assert.Equal(DiskFormat.Raw, image.Format);
    }

    [Theory]
    [InlineData(VersionOffset, 1UL, 4, "version")]
    [InlineData(VersionOffset, 4UL, 4, "version")]
    [InlineData(ClusterBitsOffset, 8UL, 4, "cluster_bits")]
    [InlineData(ClusterBitsOffset, 22UL, 4, "cluster_bits")]
    [InlineData(SizeOffset, 1UL << 60, 8, "virtual size")]
    [InlineData(SizeOffset, 0x8000000000000000UL, 8, "virtual size")]
    [InlineData(SizeOffset, 1UL << 40, 8, "l1_size")]          // L1 too small for the size
    [InlineData(L1TableOffsetOffset, 1UL << 40, 8, "L1 table")]
    [InlineData(L1TableOffsetOffset, 65536UL + 512, 8, "l1_table_offset")]
    [InlineData(L1SizeOffset, 0x10000000UL, 4, "l1_size")]
    [InlineData(L1SizeOffset, 100000UL, 4, "L1 table")]        // under the cap but past EOF
    [InlineData(CryptMethodOffset, 1UL, 4, "encrypted")]
    [InlineData(IncompatibleFeaturesOffset, IncompatExternalDataFile, 8, "external data file")] // the bit, but no file named
    [InlineData(IncompatibleFeaturesOffset, 1UL << 20, 8, "unknown incompatible")]
    [InlineData(HeaderLengthOffset, 96UL, 4, "header_length")]
    [InlineData(HeaderLengthOffset, 1UL << 20, 4, "header_length")]
    [InlineData(BackingFileSizeOffset, 5000UL, 4, "backing_file_size")]
    public void HostileHeaderField(int offset, ulong value, int width, string mentioned)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        if (offset == BackingFileSizeOffset) HeaderPatch.SetUInt64(path, BackingFileOffsetOffset, 512);
        if (width == 4) HeaderPatch.SetUInt32(path, offset, (uint)value);
        else HeaderPatch.SetUInt64(path, offset, value);
        CorruptImageException e = AssertCorrupt(path);
        Assert.Contains(mentioned, e.Message);
    }

    [Theory]
    [InlineData(512UL, "not aligned")]
    [InlineData(1UL << 40, "outside the file")]
    public void HostileL2TableOffset(ulong l2Offset, string mentioned)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        (long l1, _) = HeaderPatch.Tables(path);
        HeaderPatch.SetUInt64(path, l1, l2Offset | FlagCopied);
        Assert.Contains(mentioned, AssertCorrupt(path).Message);
    }

    [Theory]
    [InlineData(1UL << 40, "past the end")]
    [InlineData(65536UL * 3 + 4096, "not aligned")]
    public void HostileDataOffset(ulong host, string mentioned)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        (_, long l2) = HeaderPatch.Tables(path);
        HeaderPatch.SetUInt64(path, l2 + 8, host | FlagCopied); // second cluster of the disk
        Assert.Contains(mentioned, AssertCorrupt(path).Message);
    }

    [Fact]
    public void ZeroFlagInVersion2()
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp, "compat=0.10");
        (_, long l2) = HeaderPatch.Tables(path);
        HeaderPatch.SetUInt64(path, l2, HeaderPatch.GetUInt64(path, l2) | FlagZero);
        Assert.Contains("zero flag", AssertCorrupt(path).Message);
    }

    [Theory]
    [InlineData("zlib")]
    [InlineData("zstd")]
    public void GarbageCompressedDescriptor(string algorithm)
    {
        using var temp = new TempFolder();
        string path = temp.File("compressed.qcow2");
        Qemu.CreateQcow2(path, "compression_type=" + algorithm, "1M");
        Qemu.Io(path, "qcow2", "write -c -P 0x33 0 64k");
        (_, long l2) = HeaderPatch.Tables(path);
        ulong entry = HeaderPatch.GetUInt64(path, l2);
        int x = 62 - (16 - 8);
        ulong hostOffset = entry & ((1UL << x) - 1);

        // Size bits all set: reads past the real data into zeros / EOF, which does not inflate to a cluster.
        string huge = temp.File("huge.qcow2");
        File.Copy(path, huge);
        HeaderPatch.SetUInt64(huge, l2, FlagCompressed | (0xffUL << x) | (hostOffset + 7));
        AssertCorrupt(huge);

        // Offset past EOF.
        string far = temp.File("far.qcow2");
        File.Copy(path, far);
        HeaderPatch.SetUInt64(far, l2, FlagCompressed | (1UL << 40));
        Assert.Contains("compressed cluster", AssertCorrupt(far).Message);

        // Data overwritten with garbage.
        string garbage = temp.File("garbage.qcow2");
        File.Copy(path, garbage);
        HeaderPatch.SetBytes(garbage, (long)hostOffset, Enumerable.Range(0, 64).Select(i => (byte)(i * 37 + 5)).ToArray());
        Assert.Contains("compressed cluster", AssertCorrupt(garbage).Message);
    }

    [Theory]
    [InlineData(50)]      // inside the header
    [InlineData(100000)]  // after the header cluster, before the tables and data
    public void TruncatedFile(int length)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(length);
        AssertCorrupt(path);
    }

    [Fact]
    public void BackingLoopIsRefused()
    {
        using var temp = new TempFolder();
        string a = temp.File("a.qcow2"), b = temp.File("b.qcow2");
        Qemu.CreateQcow2(b, "", "1M");
        Qemu.CreateQcow2(a, "", "1M", "b.qcow2", "qcow2");
        Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b);
        var e = Assert.Throws<CorruptImageException>(() => DiskImage.Open(a));
        Assert.Contains("loops", e.Message);
        Assert.Equal(b, e.ImagePath);
    }

    [Fact]
    public void SelfBackingIsRefused()
    {
        using var temp = new TempFolder();
        string a = temp.File("self.qcow2");
        Qemu.CreateQcow2(a, "", "1M");
        Qemu.Img("rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", a);
        Assert.Contains("loops", Assert.Throws<CorruptImageException>(() => DiskImage.Open(a)).Message);
    }

    [Fact]
    public void TooDeepChainIsRefused()
    {
        using var temp = new TempFolder();
        string previous = "link0.qcow2";
        Qemu.CreateQcow2(temp.File(previous), "", "1M");
        for (int i = 1; i <= BackingChain.MaxDepth; i++)
        {
            string name = $"link{i}.qcow2";
            Qemu.CreateQcow2(temp.File(name), "", "1M", previous, "qcow2");
            previous = name;
        }

        Assert.Contains("deeper", Assert.Throws<CorruptImageException>(() => DiskImage.Open(temp.File(previous))).Message);
    }

    [Fact]
    public void MissingBackingFileIsNamed()
    {
        using var temp = new TempFolder();
        string baseImg = temp.File("gone.raw");
        File.WriteAllBytes(baseImg, new byte[1024 * 1024]);
        string top = temp.File("top.qcow2");
        Qemu.CreateQcow2(top, "", "1M", "gone.raw", "raw");
        File.Delete(baseImg);
        var e = Assert.Throws<FileNotFoundException>(() => DiskImage.Open(top));
        Assert.Contains("gone.raw", e.Message);
        Assert.Contains(top, e.Message);
        Assert.Equal(baseImg, e.FileName);
    }

    [Fact]
    public void UnsupportedBackingFormatIsRefused()
    {
        using var temp = new TempFolder();
        string top = temp.File("top.qcow2");
        File.WriteAllBytes(temp.File("base.vmdk"), new byte[1024 * 1024]);
        Qemu.CreateQcow2(top, "", "1M", "base.vmdk", "raw");
        // Turn "raw" into "vmd" + NUL-free junk of the same length: "xyz".
        byte[] head = File.ReadAllBytes(top).Take(4096).ToArray();
        int at = IndexOf(head, "raw"u8.ToArray());
        HeaderPatch.SetBytes(top, at, "xyz"u8.ToArray());
        Assert.Contains("backing format 'xyz'", Assert.Throws<CorruptImageException>(() => DiskImage.Open(top)).Message);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i <= haystack.Length - needle.Length; i++)
        {
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        }

        throw new InvalidOperationException("not found");
    }
}
