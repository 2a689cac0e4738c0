using System.Buffers.Binary;
using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>
/// Damaged and hostile VHDs: each is refused with a <see cref="CorruptImageException"/> naming the file, or read exactly
/// as qemu reads it. Never wrong bytes, never zeros for data that is gone, never a crash or a hang.
/// </summary>
public sealed class VhdHostileTests
{
    private static string QemuDynamic(TempFolder temp, string name = "victim.vhd")
    {
        string path = temp.File(name);
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "force_size=on", path, "8M");
        Qemu.Io(path, "vpc", "write -P 0x11 0 64k", "write -P 0x12 3m 1m", "write -P 0x13 8388096 512");
        return path;
    }

    private static CorruptImageException AssertRefused(string path)
    {
        var e = Assert.ThrowsAny<CorruptImageException>(() => HostileImageTests.ReadEverything(path));
        Assert.Equal(path, e.ImagePath);
        return e;
    }

    private static bool QemuReads(string path) => Qemu.Run("qemu-img", "convert", "-f", "vpc", "-O", "raw", path, path + ".q").ExitCode == 0;

    [Fact]
    public void ABatEntryPastTheEndIsRefusedNotZeros()
    {
        using var temp = new TempFolder();
        string path = QemuDynamic(temp);
        HeaderPatch.SetUInt32(path, 1536 + 4, 0x00ffff00); // block 1, far past the end
        Assert.Contains("BAT entry 1", AssertRefused(path).Message);
        Assert.False(QemuReads(path)); // qemu refuses it too ("truncated")
    }

    [Fact]
    public void EveryCutIsRefusedOrReadWhole()
    {
        using var temp = new TempFolder();
        string source = QemuDynamic(temp, "source.vhd");
        byte[] truth = VhdOracle.Qemu(source, temp);
        long length = new FileInfo(source).Length;
        var cuts = new List<long> { 0, 100, 511, 512, 600, 1536, 1600, 2048, 4096, length - 513, length - 512, length - 100, length - 1 };
        for (long at = 8192; at < length; at += 200_003) cuts.Add(at);
        foreach (long cut in cuts)
        {
            string path = temp.File($"cut-{cut}.vhd");
            File.Copy(source, path);
            using (var f = new FileStream(path, FileMode.Open)) f.SetLength(cut);
            try
            {
                using IDiskImage image = DiskImage.Open(path);
                VhdOracle.AssertSame(truth, Vhdx.ImageBytes.ReadAll(image), $"cut at {cut}");
            }
            catch (CorruptImageException e)
            {
                Assert.Equal(path, e.ImagePath);
            }
        }
    }

    [Fact]
    public void AFixedDiskCutShortIsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("fixed.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", path, "4M");
        byte[] footer = HeaderPatch.GetBytes(path, (4L << 20), 512);
        using (var f = new FileStream(path, FileMode.Open))
        {
            f.SetLength(3L << 20);
            f.Position = f.Length;
            f.Write(footer); // a footer at the end again, of a disk now 1 MiB short
        }

        Assert.Contains("cut short", AssertRefused(path).Message);
    }

    [Theory]
    [InlineData(0, "footer copy")]       // dynamic: the copy qemu reads
    [InlineData(512 + 100, "dynamic disk header's checksum")]
    public void DamagedChecksumsAreRefused(long at, string mentioned)
    {
        using var temp = new TempFolder();
        string path = QemuDynamic(temp);
        HeaderPatch.SetBytes(path, at == 0 ? 100 : at, new byte[] { 0x5a });
        Assert.Contains(mentioned, AssertRefused(path).Message);
    }

    [Fact]
    public void AFixedDiskWithADamagedFooterIsRefusedAsQemuRefusesIt()
    {
        using var temp = new TempFolder();
        string path = temp.File("fixed.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "subformat=fixed", path, "4M");
        long footer = new FileInfo(path).Length - 512;
        HeaderPatch.SetBytes(path, footer + 200, new byte[] { 0x5a });
        Assert.Contains("damaged", AssertRefused(path).Message);
        Assert.False(QemuReads(path));
    }

    [Fact]
    public void ADynamicDiskWithoutItsFooterCopyIsRefused()
    {
        // qemu would take it for a fixed disk and read its headers and BAT as the guest's first sectors.
        using var temp = new TempFolder();
        var builder = new VhdBuilder(VhdBuilder.Dynamic, 4L << 20) { HeadFooter = false };
        builder.Fill(0, 4096, 0x21);
        string path = temp.File("nocopy.vhd");
        builder.Build(path);
        Assert.Contains("copy of its footer", AssertRefused(path).Message);
    }

    [Theory]
    [InlineData("overlap-bat")]
    [InlineData("overlap-header")]
    [InlineData("alias")]
    [InlineData("table-small")]
    [InlineData("table-past-end")]
    [InlineData("type")]
    [InlineData("huge")]
    [InlineData("block-size")]
    [InlineData("header-past-end")]
    public void HostileFields(string what)
    {
        using var temp = new TempFolder();
        var builder = new VhdBuilder(VhdBuilder.Dynamic, 8L << 20);
        builder.Fill(0, 4096, 0x31);
        builder.Fill(5L << 20, 4096, 0x32);
        string path = temp.File(what + ".vhd");
        builder.Build(path);
        switch (what)
        {
            case "overlap-bat":
                HeaderPatch.SetUInt32(path, builder.BatOffset, 3); // block 0 at sector 3: over the BAT
                break;
            case "overlap-header":
                HeaderPatch.SetUInt32(path, builder.BatOffset, 1);
                break;
            case "alias":
                HeaderPatch.SetUInt32(path, builder.BatOffset + 8, HeaderPatch.GetUInt32(path, builder.BatOffset)); // block 2 = block 0
                break;
            case "table-small":
                PatchHeader(path, h => BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), 2));
                break;
            case "table-past-end":
                PatchHeader(path, h => BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(16), 1UL << 40));
                break;
            case "type":
                PatchFooters(path, f => BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(60), 5));
                break;
            case "huge":
                PatchFooters(path, f => BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(48), 1UL << 50));
                break;
            case "block-size":
                PatchHeader(path, h => BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(32), 3 << 20));
                break;
            case "header-past-end":
                PatchFooters(path, f => BinaryPrimitives.WriteUInt64BigEndian(f.AsSpan(16), 1UL << 40));
                break;
        }

        AssertRefused(path);
    }

    [Fact]
    public void FlippedBytesNeverGiveWrongData()
    {
        using var temp = new TempFolder();
        string source = QemuDynamic(temp, "source.vhd");
        byte[] original = File.ReadAllBytes(source);
        var random = new Random(1234);
        long[] areas = { 0, 512, 1536, 2048 + 512 + (3L << 20) - (2L << 20) }; // footer copy, header, BAT, a bitmap
        for (int round = 0; round < 60; round++)
        {
            byte[] bytes = original.ToArray();
            long area = areas[round % areas.Length];
            for (int k = 0; k < 1 + round % 3; k++) bytes[area + random.Next(area == 512 ? 1024 : 512)] ^= (byte)(1 << random.Next(8));
            string path = temp.File($"flip-{round}.vhd");
            File.WriteAllBytes(path, bytes);
            byte[]? ours = null;
            try
            {
                using IDiskImage image = DiskImage.Open(path);
                ours = Vhdx.ImageBytes.ReadAll(image);
            }
            catch (CorruptImageException e)
            {
                Assert.Equal(path, e.ImagePath);
            }

            if (ours != null)
            {
                // Read: then qemu reads the same bytes (or refuses what we read, never reads other bytes).
                string raw = path + ".raw";
                if (Qemu.Run("qemu-img", "convert", "-f", "vpc", "-O", "raw", path, raw).ExitCode == 0)
                    VhdOracle.AssertSame(File.ReadAllBytes(raw), ours, $"round {round}");
            }

            File.Delete(path);
            File.Delete(path + ".raw");
        }
    }

    private static void PatchHeader(string path, Action<byte[]> change)
    {
        byte[] h = HeaderPatch.GetBytes(path, 512, 1024);
        change(h);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(36), VhdBuilder.Checksum(h, 36));
        HeaderPatch.SetBytes(path, 512, h);
    }

    private static void PatchFooters(string path, Action<byte[]> change)
    {
        long end = new FileInfo(path).Length - 512;
        foreach (long at in new[] { 0L, end })
        {
            byte[] f = HeaderPatch.GetBytes(path, at, 512);
            change(f);
            BinaryPrimitives.WriteUInt32BigEndian(f.AsSpan(64), VhdBuilder.Checksum(f, 64));
            HeaderPatch.SetBytes(path, at, f);
        }
    }
}
