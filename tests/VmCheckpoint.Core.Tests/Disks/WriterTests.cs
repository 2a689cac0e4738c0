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
            // Where this file system takes O_DIRECT, every data cluster went past the page cache.
            if (DirectWorksHere(temp)) Assert.Equal(3 * MiB - 64 * 1024, ((Qcow2ImageWriter)writer).DirectBytes);
        }

        AssertQemuCheckClean(dst);
        Assert.Equal(0, Qemu.Compare(raw, "raw", dst, "qcow2").ExitCode);
        using var image = DiskImage.Open(dst);
        Assert.Equal(3 * MiB - 64 * 1024, image.GetDataExtents(0, size).Sum(e => e.Length));
    }

    [Theory]
    [InlineData(DiskFormat.Qcow2)]
    [InlineData(DiskFormat.Raw)]
    public void DirectAndBufferedWritesMakeTheSameImage(DiskFormat format)
    {
        using var temp = new TempFolder();
        // An odd size: the raw file's last cluster is short, so it cannot go through O_DIRECT and takes the other path.
        long size = 40 * MiB + 1536;
        var random = new Random(11);
        var pieces = new List<(long Offset, byte[] Data)>();
        foreach (long offset in new[] { 0L, 5 * MiB + 4096, 17 * MiB, size - 70_000 })
        {
            var d = new byte[offset == 17 * MiB ? 3 * MiB : 70_000];
            random.NextBytes(d);
            pieces.Add((offset, d));
        }
        string Write(string name, bool direct)
        {
            string path = temp.File(name);
            string? before = Environment.GetEnvironmentVariable(DirectFile.EnvironmentVariable);
            Environment.SetEnvironmentVariable(DirectFile.EnvironmentVariable, direct ? null : "off");
            try
            {
                using var writer = DiskImage.Create(path, format, size);
                foreach (var (offset, data) in pieces) writer.Write(offset, data, 0, data.Length);
                writer.Complete();
            }
            finally
            {
                Environment.SetEnvironmentVariable(DirectFile.EnvironmentVariable, before);
            }
            return path;
        }
        string qemuFormat = format == DiskFormat.Raw ? "raw" : "qcow2";
        string viaDirect = Write("direct." + qemuFormat, direct: true);
        string viaCache = Write("cached." + qemuFormat, direct: false);
        if (format == DiskFormat.Qcow2)
        {
            AssertQemuCheckClean(viaDirect);
            Assert.True(File.ReadAllBytes(viaDirect).AsSpan().SequenceEqual(File.ReadAllBytes(viaCache)), "the two qcow2 files differ byte for byte");
        }
        Assert.Equal(0, Qemu.Compare(viaDirect, qemuFormat, viaCache, qemuFormat).ExitCode);
        using var image = DiskImage.Open(viaDirect);
        var back = new byte[size];
        image.Read(0, back, 0, back.Length);
        foreach (var (offset, data) in pieces) Assert.True(back.AsSpan((int)offset, data.Length).SequenceEqual(data));
    }

    private static bool DirectWorksHere(TempFolder temp)
    {
        string probe = temp.File("probe");
        File.WriteAllBytes(probe, new byte[0]);
        using var direct = DirectFile.TryOpenForWriting(probe);
        return direct != null;
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
