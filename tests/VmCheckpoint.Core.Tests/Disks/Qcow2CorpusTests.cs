using System.Text;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Images made by qemu-img/qemu-io, read through DiskImage and compared with qemu's own view.</summary>
public sealed class Qcow2CorpusTests
{
    /// <summary>First sector, an unaligned write in the middle, a larger run, the last sector.</summary>
    private static readonly string[] CommonWrites =
    {
        "write -P 0x11 0 512",
        "write -P 0x12 5000 3000",
        "write -P 0x13 1m 200k",
        "write -P 0x14 8388096 512",
    };

    public static TheoryData<string> Cases => new()
    {
        "v2-64k", "v3-512", "v3-4k", "v3-64k", "v3-2m", "v3-zero-clusters",
        "extl2-64k", "extl2-2m", "extl2-backing",
        "zlib-qemu-io", "zstd-qemu-io", "zlib-convert", "zstd-convert",
        "chain3", "odd-size", "dirty-bit",
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GuestViewMatchesQemu(string name)
    {
        using var temp = new TempFolder();
        string top = Build(name, temp);
        GuestView.AssertMatchesQemu(top, "qcow2", temp);

        // The corpus must really exercise what its name says.
        using var image = (Qcow2Image)DiskImage.Open(top);
        var kinds = image.Map(0, image.VirtualSize).Select(s => s.Kind).ToHashSet();
        if (name.StartsWith("z", StringComparison.Ordinal))
        {
            Assert.Contains(Qcow2Image.SegmentKind.Compressed, kinds);
            Assert.Equal(name.StartsWith("zstd", StringComparison.Ordinal) ? Qcow2Format.CompressionZstd : Qcow2Format.CompressionZlib, image.Header.CompressionType);
        }

        if (name.StartsWith("extl2", StringComparison.Ordinal)) Assert.True(image.Header.HasExtendedL2);
        if (name.StartsWith("v2", StringComparison.Ordinal)) Assert.Equal(2, image.Header.Version);
        if (name.Contains("zero") || name.StartsWith("extl2", StringComparison.Ordinal)) Assert.Contains(Qcow2Image.SegmentKind.Zero, kinds);
    }

    private static string Build(string name, TempFolder temp)
    {
        string img = temp.File(name + ".qcow2");
        switch (name)
        {
            case "v2-64k":
                Qemu.CreateQcow2(img, "compat=0.10,cluster_size=64k", "8M");
                Qemu.Io(img, "qcow2", CommonWrites);
                break;
            case "v3-512":
            case "v3-4k":
            case "v3-64k":
            case "v3-2m":
                Qemu.CreateQcow2(img, "compat=1.1,cluster_size=" + name.Substring(3), "8M");
                Qemu.Io(img, "qcow2", CommonWrites);
                break;
            case "v3-zero-clusters":
                Qemu.CreateQcow2(img, "compat=1.1", "8M");
                Qemu.Io(img, "qcow2", "write -P 0x21 0 2m", "write -z 512k 1m", "write -z 4m 64k", "write -P 0x22 6m 64k");
                break;
            case "extl2-64k":
                Qemu.CreateQcow2(img, "extended_l2=on,cluster_size=64k", "8M");
                Qemu.Io(img, "qcow2", "write -P 0x31 2k 2k", "write -P 0x32 70k 5k", "write -P 0x33 130k 1k", "write -z 132k 2k",
                    "write -P 0x34 1m 256k", "write -z 1100k 4k", "write -P 0x35 8388096 512");
                break;
            case "extl2-2m":
                Qemu.CreateQcow2(img, "extended_l2=on,cluster_size=2M", "8M");
                Qemu.Io(img, "qcow2", "write -P 0x41 100k 64k", "write -P 0x42 3m 10k", "write -z 3m 64k", "write -P 0x43 8388096 512");
                break;
            case "extl2-backing":
            {
                string baseImg = temp.File("extl2-base.qcow2");
                Qemu.CreateQcow2(baseImg, "", "4M");
                Qemu.Io(baseImg, "qcow2", "write -P 0x51 0 1m", "write -P 0x52 3m 1m");
                Qemu.CreateQcow2(img, "extended_l2=on,cluster_size=64k", "4M", "extl2-base.qcow2", "qcow2");
                Qemu.Io(img, "qcow2", "write -P 0x53 4k 2k", "write -z 10k 2k", "write -P 0x54 3m 1k", "write -z 3200k 6k");
                break;
            }
            case "zlib-qemu-io":
            case "zstd-qemu-io":
                Qemu.CreateQcow2(img, "compression_type=" + name.Substring(0, 4), "8M");
                Qemu.Io(img, "qcow2", "write -c -P 0x61 0 64k", "write -c -P 0x62 128k 64k", "write -P 0x63 256k 64k", "write -c -P 0x64 8323072 64k");
                break;
            case "zlib-convert":
            case "zstd-convert":
            {
                string src = temp.File("text.raw");
                WriteCompressibleRaw(src, 3 * 1024 * 1024 + 512);
                Qemu.Img("convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=" + name.Substring(0, 4) + ",cluster_size=4k", src, img);
                break;
            }
            case "chain3":
                BuildChain3(temp, img);
                break;
            case "odd-size":
                Qemu.CreateQcow2(img, "", (5 * 1024 * 1024 + 512).ToString());
                Qemu.Io(img, "qcow2", "write -P 0x71 0 512", "write -P 0x72 5m 512", "write -P 0x73 4m 100k");
                break;
            case "dirty-bit":
                // lazy_refcounts images stay dirty until closed cleanly; setting the bit by hand is the same thing.
                Qemu.CreateQcow2(img, "", "2M");
                Qemu.Io(img, "qcow2", "write -P 0x81 0 64k");
                HeaderPatch.SetUInt64(img, Qcow2Format.IncompatibleFeaturesOffset, Qcow2Format.IncompatDirty);
                using (var image = DiskImage.Open(img))
                {
                    Assert.True(((Qcow2Image)image).Header.IsDirty);
                }

                // qemu would repair the dirty image on open; compare against a clean copy instead.
                string clean = temp.File("clean.qcow2");
                File.Copy(img, clean);
                HeaderPatch.SetUInt64(clean, Qcow2Format.IncompatibleFeaturesOffset, 0);
                string dump = temp.File("dirty.raw");
                using (var image = DiskImage.Open(img))
                {
                    GuestView.Dump(image, dump);
                }

                Assert.Equal(0, Qemu.Compare(dump, "raw", clean, "qcow2").ExitCode);
                return clean;
            default:
                throw new ArgumentException(name);
        }

        return img;
    }

    /// <summary>raw base (4 MiB) ← qcow2 mid (6 MiB) ← qcow2 top (8 MiB), overlapping writes at every level.</summary>
    internal static void BuildChain3(TempFolder temp, string top)
    {
        string baseRaw = temp.File("base.raw");
        using (var f = new FileStream(baseRaw, FileMode.CreateNew))
        {
            f.SetLength(4 * 1024 * 1024);
            var block = Enumerable.Range(0, 256 * 1024).Select(i => (byte)(i * 7 + 1)).ToArray();
            f.Position = 0; f.Write(block);
            f.Position = 1024 * 1024 + 4096; f.Write(block);
            f.Position = 4 * 1024 * 1024 - block.Length; f.Write(block);
        }

        string mid = temp.File("mid.qcow2");
        Qemu.CreateQcow2(mid, "", "6M", "base.raw", "raw");
        Qemu.Io(mid, "qcow2", "write -P 0x91 1m 1m", "write -P 0x92 4m 1m", "write -z 3900k 100k");
        Qemu.CreateQcow2(top, "cluster_size=4k", "8M", "mid.qcow2", "qcow2");
        Qemu.Io(top, "qcow2", "write -P 0xa1 1536k 1m", "write -z 100k 64k", "write -P 0xa2 7m 4k", "write -P 0xa3 8388096 512");
    }

    [Fact]
    public void ChainHasThreeLinksAndSmallExtents()
    {
        using var temp = new TempFolder();
        string top = temp.File("top.qcow2");
        BuildChain3(temp, top);
        using var image = (Qcow2Image)DiskImage.Open(top);
        var mid = Assert.IsType<Qcow2Image>(image.Backing);
        Assert.Equal(DiskFormat.Raw, mid.Backing!.Format);
        Assert.Equal(4L * 1024 * 1024, mid.Backing.VirtualSize);
        long total = image.GetDataExtents(0, image.VirtualSize).Sum(e => e.Length);
        Assert.True(total < image.VirtualSize / 2, $"extents cover {total} of {image.VirtualSize}");
    }

    [Fact]
    public void BackingWithoutRecordedFormatIsProbed()
    {
        using var temp = new TempFolder();
        string top = temp.File("top.qcow2");
        BuildChain3(temp, top);
        string reference = temp.File("reference.raw");
        Qemu.Img("convert", "-q", "-O", "raw", top, reference);

        // Hide the backing format extensions of both qcow2 links: an unknown extension type is skipped.
        HeaderPatch.RenameExtension(top, Qcow2Format.ExtensionBackingFormat, 0x7e570001);
        HeaderPatch.RenameExtension(temp.File("mid.qcow2"), Qcow2Format.ExtensionBackingFormat, 0x7e570001);

        string dump = temp.File("dump.raw");
        using (var image = (Qcow2Image)DiskImage.Open(top))
        {
            Assert.Null(image.Header.BackingFormat);
            GuestView.Dump(image, dump);
        }

        Assert.Equal(File.ReadAllBytes(reference), File.ReadAllBytes(dump));
    }

    [Fact]
    public void LargeReadOverContiguousClustersIsCoalesced()
    {
        using var temp = new TempFolder();
        string img = temp.File("contiguous.qcow2");
        Qemu.CreateQcow2(img, "cluster_size=64k", "4M");
        Qemu.Io(img, "qcow2", "write -P 0x5c 0 2m");
        using var image = (Qcow2Image)DiskImage.Open(img);
        var buffer = new byte[1024 * 1024];
        image.Read(512 * 1024, buffer, 0, buffer.Length);
        Assert.True(image.HostReadCount <= 2, $"{image.HostReadCount} host reads for 1 MiB over 64 KiB clusters");
        Assert.All(buffer, b => Assert.Equal(0x5c, b));
    }

    [Fact]
    public void ReadPastVirtualSizeThrows()
    {
        using var temp = new TempFolder();
        string img = temp.File("small.qcow2");
        Qemu.CreateQcow2(img, "", "1M");
        using var image = DiskImage.Open(img);
        Assert.Throws<ArgumentOutOfRangeException>(() => image.Read(1024 * 1024 - 10, new byte[20], 0, 20));
        Assert.Throws<ArgumentOutOfRangeException>(() => image.GetDataExtents(0, 2 * 1024 * 1024).ToList());
    }

    private static void WriteCompressibleRaw(string path, int size)
    {
        var text = new StringBuilder();
        for (int i = 0; text.Length < size; i++) text.Append("sector ").Append(i).Append(" of a compressible disk\n");
        byte[] bytes = Encoding.ASCII.GetBytes(text.ToString(0, size));
        Array.Clear(bytes, 1024 * 1024, 512 * 1024); // a hole that stays unallocated
        File.WriteAllBytes(path, bytes);
    }
}
