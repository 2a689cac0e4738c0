using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

public sealed class WriterTests
{
    private const long MiB = 1024 * 1024;

    /// <summary>A qcow2 source with data at the edges and a few runs in between.</summary>
    private static string MakeSource(TempFolder temp, string size, params string[] writes)
    {
        string src = temp.File("source.qcow2");
        Qemu.CreateQcow2(src, "cluster_size=4k", size);
        Qemu.Io(src, "qcow2", writes);
        return src;
    }

    [Theory]
    [InlineData(1024 * 1024)]
    [InlineData(100_000)] // pieces that straddle clusters
    [InlineData(3000)]
    public void Qcow2WriterOutputPassesQemuCheckAndMatchesSource(int piece)
    {
        using var temp = new TempFolder();
        string src = MakeSource(temp, "64M", "write -P 0x11 0 512", "write -P 0x12 70000 300000", "write -P 0x13 33m 1m",
            "write -z 33m 4k", "write -P 0x14 67108352 512");
        string dst = temp.File("restored.qcow2");
        using (IDiskImage source = DiskImage.Open(src))
        using (IDiskImageWriter writer = DiskImage.Create(dst, DiskFormat.Qcow2, source.VirtualSize))
        {
            GuestView.Copy(source, writer, piece);
        }

        AssertQemuCheckClean(dst);
        Assert.Equal(0, Qemu.Compare(src, "qcow2", dst, "qcow2").ExitCode);
        Assert.True(Qemu.ActualSize(dst) < 4 * MiB, $"actual size {Qemu.ActualSize(dst)} of a mostly empty 64 MiB disk");
        GuestView.AssertMatchesQemu(dst, "qcow2", temp);
    }

    [Fact]
    public void Qcow2WriterHandlesSeveralL2TablesAndOddSize()
    {
        using var temp = new TempFolder();
        // 1.5 GiB + 512 virtual: three L2 tables of 512 MiB each, and a final partial cluster.
        long size = 1536 * MiB + 512;
        string src = MakeSource(temp, size.ToString(), "write -P 0x21 0 64k", "write -P 0x22 600m 128k", "write -P 0x23 1100m 4k",
            $"write -P 0x24 {size - 512} 512");
        string dst = temp.File("restored.qcow2");
        using (IDiskImage source = DiskImage.Open(src))
        using (IDiskImageWriter writer = DiskImage.Create(dst, DiskFormat.Qcow2, source.VirtualSize))
        {
            GuestView.Copy(source, writer, 1024 * 1024);
        }

        AssertQemuCheckClean(dst);
        Assert.Equal(0, Qemu.Compare(src, "qcow2", dst, "qcow2").ExitCode);
        Assert.True(new FileInfo(dst).Length < 2 * MiB);
    }

    [Fact]
    public void Qcow2WriterSplitsOneWriteAcrossL2Tables()
    {
        using var temp = new TempFolder();
        // One 3 MiB write from 511 MiB: its clusters belong to two L2 tables (512 MiB each), with a zero cluster inside.
        long size = 1024 * MiB;
        var data = new byte[3 * MiB];
        new Random(7).NextBytes(data);
        Array.Clear(data, (int)MiB, 64 * 1024);
        string raw = temp.File("expected.raw");
        using (var f = new FileStream(raw, FileMode.CreateNew))
        {
            f.SetLength(size);
            f.Position = 511 * MiB;
            f.Write(data, 0, data.Length);
        }
        string dst = temp.File("restored.qcow2");
        using (IDiskImageWriter writer = DiskImage.Create(dst, DiskFormat.Qcow2, size))
        {
            writer.Write(511 * MiB, data, 0, data.Length);
            writer.Complete();
        }

        AssertQemuCheckClean(dst);
        Assert.Equal(0, Qemu.Compare(raw, "raw", dst, "qcow2").ExitCode);
        using var image = DiskImage.Open(dst);
        Assert.Equal(3 * MiB - 64 * 1024, image.GetDataExtents(0, size).Sum(e => e.Length));
    }

    [Fact]
    public void EmptyQcow2IsValid()
    {
        using var temp = new TempFolder();
        string dst = temp.File("empty.qcow2");
        using (var writer = DiskImage.Create(dst, DiskFormat.Qcow2, 8 * MiB)) writer.Complete();
        AssertQemuCheckClean(dst);
        using var image = DiskImage.Open(dst);
        Assert.Empty(image.GetDataExtents(0, image.VirtualSize));
    }

    [Fact]
    public void RawWriterOutputIsSparseAndMatchesSource()
    {
        using var temp = new TempFolder();
        string src = MakeSource(temp, "64M", "write -P 0x31 0 512", "write -P 0x32 10m 333333", "write -P 0x33 67108352 512");
        string dst = temp.File("restored.raw");
        using (IDiskImage source = DiskImage.Open(src))
        using (IDiskImageWriter writer = DiskImage.Create(dst, DiskFormat.Raw, source.VirtualSize))
        {
            GuestView.Copy(source, writer, 100_000);
        }

        Assert.Equal(64 * MiB, new FileInfo(dst).Length);
        Assert.Equal(0, Qemu.Compare(dst, "raw", src, "qcow2").ExitCode);
        Assert.True(Qemu.ActualSize(dst) < 4 * MiB, $"actual size {Qemu.ActualSize(dst)} of a mostly empty 64 MiB raw file");
    }

    [Theory]
    [InlineData(DiskFormat.Raw)]
    [InlineData(DiskFormat.Qcow2)]
    public void WritesMustAscend(DiskFormat format)
    {
        using var temp = new TempFolder();
        using var writer = DiskImage.Create(temp.File("x.img"), format, 4 * MiB);
        var data = new byte[4096];
        writer.Write(8192, data, 0, data.Length);
        Assert.Throws<InvalidOperationException>(() => writer.Write(4096, data, 0, data.Length));
        Assert.Throws<InvalidOperationException>(() => writer.Write(10000, data, 0, data.Length)); // overlaps
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write(4 * MiB - 100, data, 0, data.Length));
    }

    [Fact]
    public void Qcow2SizeMustBeAMultipleOf512()
    {
        using var temp = new TempFolder();
        Assert.Throws<ArgumentException>(() => DiskImage.Create(temp.File("x.qcow2"), DiskFormat.Qcow2, 1000));
        Assert.False(File.Exists(temp.File("x.qcow2")));
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(32768L)]          // exactly one refcount block's worth
    [InlineData(32767L)]
    [InlineData(1_000_000_000L)]  // 64 TB of clusters: many blocks, several table clusters
    public void RefcountLayoutCoversItself(long others)
    {
        (long table, long blocks) = Qcow2ImageWriter.RefcountLayout(others);
        long total = others + table + blocks;
        Assert.True(blocks * Qcow2ImageWriter.RefcountsPerBlock >= total);
        Assert.True(table * Qcow2ImageWriter.ClusterSize / Qcow2ImageWriter.RefcountTableEntrySize >= blocks);
        // And not wastefully: one block fewer would not do.
        Assert.True((blocks - 1) * (long)Qcow2ImageWriter.RefcountsPerBlock < total);
    }

    private static void AssertQemuCheckClean(string path)
    {
        Qemu.Result r = Qemu.Run("qemu-img", "check", "--output=json", path);
        Assert.True(r.ExitCode == 0, $"qemu-img check exited {r.ExitCode}: {r.Stdout} {r.Stderr}");
        using var doc = System.Text.Json.JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        foreach (string field in new[] { "corruptions", "leaks", "check-errors" })
        {
            if (root.TryGetProperty(field, out var v)) Assert.True(v.GetInt64() == 0, $"{field}: {r.Stdout}");
        }
    }
}
