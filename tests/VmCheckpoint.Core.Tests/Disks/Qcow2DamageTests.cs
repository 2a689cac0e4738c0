using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>
/// qcow2 images damaged where the guest's data depends on it (refused, never read as zeros), damaged where it does not
/// (read, with a warning), and unusual but valid as qemu reads them (the corrupt bit, external data files, odd
/// header lengths). Every byte read is compared with qemu's view of the undamaged image.
/// </summary>
public sealed class Qcow2DamageTests
{
    /// <summary>A 64 MiB image with data at 0-1 MiB, 30-31 MiB and the last sector; returns its path.</summary>
    private static string MakeImage(TempFolder temp, string name = "disk.qcow2", string options = "")
    {
        string path = temp.File(name);
        Qemu.CreateQcow2(path, options, "64M");
        Qemu.Io(path, "qcow2", "write -P 0x11 0 1M", "write -P 0x22 30M 1M", "write -P 0x33 67108352 512");
        return path;
    }

    /// <summary>qemu's guest view, qemu run in <paramref name="folder"/> (it takes relative data file names from there).</summary>
    private static byte[] QemuView(string path, TempFolder temp, string? folder = null)
    {
        string raw = temp.File(Path.GetFileName(path) + "." + Guid.NewGuid().ToString("N") + ".raw");
        var psi = new ProcessStartInfo("qemu-img") { RedirectStandardError = true, RedirectStandardOutput = true, WorkingDirectory = folder ?? temp.Path };
        foreach (string a in new[] { "convert", "-U", "-f", "qcow2", "-O", "raw", path, raw }) psi.ArgumentList.Add(a);
        using (var p = Process.Start(psi)!)
        {
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"qemu-img convert {path}: {err}");
        }
        byte[] bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    private static byte[] OurView(string path, out IReadOnlyList<string> warnings)
    {
        using IDiskImage image = DiskImage.Open(path);
        byte[] data = Vhdx.ImageBytes.ReadAll(image);
        Vhdx.ImageBytes.AssertExtentsCover(image, data);
        warnings = DiskImage.GetWarnings(image);
        return data;
    }

    private static void AssertSame(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} bytes, expected {expected.Length}");
        int at = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(at == expected.Length, $"{what}: first difference at byte {at}");
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Asserts that no bitmap goes into <paramref name="path"/>: refused, reason given, file untouched.</summary>
    private static void AssertNotWritten(string path, string mentioned)
    {
        string before = Hash(path);
        string? why = Qcow2BitmapEditor.WhyNotWritable(path);
        Assert.NotNull(why);
        Assert.Contains(mentioned, why, StringComparison.OrdinalIgnoreCase);
        Qcow2BitmapEditor editor = Qcow2BitmapEditor.Find() ?? throw new InvalidOperationException("qemu-img not found");
        Assert.False(editor.TryAdd(path, "vmcheckpoint-test", out string error));
        Assert.Contains("nothing was written", error);
        Assert.Equal(before, Hash(path));
    }

    [Fact]
    public void AnImageCutShortIsRefusedNotReadAsZeros()
    {
        using var temp = new TempFolder();
        string source = MakeImage(temp, "source.qcow2");
        byte[] truth = QemuView(source, temp);
        long length = new FileInfo(source).Length;
        var cuts = new List<long> { 200_000, 300_000, 400_000, 1_000_000, 1_400_000, length - 70_000, length - 65_536, length - 4096, length - 1 };
        for (long at = 512; at < length; at += 97_007) cuts.Add(at);
        foreach (long cut in cuts)
        {
            string path = temp.File($"cut-{cut}.qcow2");
            File.Copy(source, path);
            using (var f = new FileStream(path, FileMode.Open)) f.SetLength(cut);
            try
            {
                AssertSame(truth, OurView(path, out _), $"cut at {cut}");
            }
            catch (CorruptImageException e)
            {
                Assert.Equal(path, e.ImagePath);
            }

            File.Delete(path);
        }

        // The issue's case: `head -c 200000` leaves the L1 table and loses the L2 tables and data. qemu reads zeros.
        string head = temp.File("head.qcow2");
        File.WriteAllBytes(head, File.ReadAllBytes(source).AsSpan(0, 200_000).ToArray());
        Assert.Throws<CorruptImageException>(() => OurView(head, out _));
        // Cut inside the data itself: the cluster's tail is gone, not zeros.
        (_, long l2) = HeaderPatch.Tables(source);
        long firstData = (long)(HeaderPatch.GetUInt64(source, l2) & OffsetMask);
        string inData = temp.File("in-data.qcow2");
        File.WriteAllBytes(inData, File.ReadAllBytes(source).AsSpan(0, (int)firstData + 4096).ToArray());
        Assert.Contains("past the end", Assert.Throws<CorruptImageException>(() => OurView(inData, out _)).Message);
    }

    [Fact]
    public void ExtendedL2ImagesEndMidClusterAndThatIsFine()
    {
        // qemu writes only the subclusters it needs: the file legitimately ends inside the last data cluster.
        using var temp = new TempFolder();
        string path = temp.File("extl2.qcow2");
        Qemu.CreateQcow2(path, "extended_l2=on", "8M");
        Qemu.Io(path, "qcow2", "write -P 0x44 0 4k");
        Assert.NotEqual(0, new FileInfo(path).Length % 65536);
        AssertSame(QemuView(path, temp), OurView(path, out var warnings), "qemu");
        Assert.Empty(warnings);
    }

    [Fact]
    public void TheCorruptBitIsReadAsQemuReadsItAndSaidSo()
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        HeaderPatch.SetUInt64(path, IncompatibleFeaturesOffset, HeaderPatch.GetUInt64(path, IncompatibleFeaturesOffset) | IncompatCorrupt);
        AssertSame(QemuView(path, temp), OurView(path, out var warnings), "qemu");
        Assert.Contains("corrupt", Assert.Single(warnings));
        AssertNotWritten(path, "corrupt");
    }

    [Theory]
    [InlineData("relative", "")]
    [InlineData("absolute", "")]
    [InlineData("raw", "")]
    [InlineData("relative", "extended_l2=on")]
    public void ExternalDataFilesAreRead(string kind, string extra)
    {
        using var temp = new TempFolder();
        string path = temp.File("disk.qcow2");
        string dataName = kind == "absolute" ? temp.File("disk.data") : "disk.data";
        string options = $"data_file={dataName}" + (kind == "raw" ? ",data_file_raw=on" : "") + (extra.Length > 0 ? "," + extra : "");
        var create = new ProcessStartInfo("qemu-img") { WorkingDirectory = temp.Path, RedirectStandardError = true };
        foreach (string a in new[] { "create", "-q", "-f", "qcow2", "-o", options, path, "16M" }) create.ArgumentList.Add(a);
        using (var p = Process.Start(create)!) { p.WaitForExit(); Assert.Equal(0, p.ExitCode); }
        var io = new ProcessStartInfo("qemu-io") { WorkingDirectory = temp.Path, RedirectStandardOutput = true };
        foreach (string a in new[] { "-f", "qcow2", "-c", "write -P 0x55 0 64k", "-c", "write -P 0x66 5m 100k", "-c", "write -z 5m 4k", path }) io.ArgumentList.Add(a);
        using (var p = Process.Start(io)!) { p.StandardOutput.ReadToEnd(); p.WaitForExit(); Assert.Equal(0, p.ExitCode); }

        AssertSame(QemuView(path, temp, temp.Path), OurView(path, out var warnings), "qemu");
        Assert.Empty(warnings);
        using IDiskImage image = DiskImage.Open(path);
        Assert.Equal(temp.File("disk.data"), ((Qcow2Image)image).DataFilePath);
        // A raw data file maps every cluster; its holes are not reported as data.
        Assert.True(image.GetDataExtents(0, image.VirtualSize).Sum(e => e.Length) <= 1L << 20);
    }

    [Fact]
    public void AMissingOrShortDataFileIsNamed()
    {
        using var temp = new TempFolder();
        string path = temp.File("disk.qcow2");
        string data = temp.File("disk.data");
        Qemu.CreateQcow2(path, $"data_file={data}", "16M");
        Qemu.Io(path, "qcow2", "write -P 0x55 0 64k", "write -P 0x66 12m 64k");

        using (var f = new FileStream(data, FileMode.Open)) f.SetLength(1L << 20);
        var corrupt = Assert.ThrowsAny<CorruptImageException>(() => OurView(path, out _));
        Assert.Contains(data, corrupt.Message);

        File.Delete(data);
        var missing = Assert.Throws<FileNotFoundException>(() => DiskImage.Open(path));
        Assert.Contains(data, missing.Message);
        Assert.Contains(path, missing.Message);
    }

    [Fact]
    public void ADataFileClusterAwayFromItsGuestOffsetIsRefused()
    {
        using var temp = new TempFolder();
        string path = temp.File("disk.qcow2");
        Qemu.CreateQcow2(path, $"data_file={temp.File("disk.data")}", "16M");
        Qemu.Io(path, "qcow2", "write -P 0x55 0 64k", "write -P 0x66 1m 64k");
        (_, long l2) = HeaderPatch.Tables(path);
        HeaderPatch.SetUInt64(path, l2, (1UL << 20) | FlagCopied); // guest 0 pointed at guest 1 MiB's cluster
        Assert.Contains("guest offset", Assert.ThrowsAny<CorruptImageException>(() => OurView(path, out _)).Message);
    }

    [Theory]
    [InlineData(104)]
    [InlineData(105)]
    [InlineData(108)]
    [InlineData(117)]
    [InlineData(120)]
    public void HeaderLengthsQemuTakes(int headerLength)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp, "disk.qcow2", "compat=1.1");
        byte[] truth = QemuView(path, temp);
        MoveExtensions(path, headerLength);
        Assert.Equal((uint)headerLength, HeaderPatch.GetUInt32(path, HeaderLengthOffset));
        AssertSame(truth, QemuView(path, temp), "qemu after the move"); // qemu takes it: so must we
        AssertSame(truth, OurView(path, out var warnings), "ours");
        Assert.Empty(warnings);
    }

    /// <summary>Sets header_length and moves the header extensions to start right after it.</summary>
    private static void MoveExtensions(string path, int headerLength)
    {
        byte[] cluster = HeaderPatch.GetBytes(path, 0, 4096);
        int from = (int)BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(HeaderLengthOffset));
        int end = from;
        while (true)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(end));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(cluster.AsSpan(end + 4));
            end += 8;
            if (type == 0) break;
            end += (int)((length + 7) / 8 * 8);
        }

        byte[] extensions = cluster.AsSpan(from, end - from).ToArray();
        Array.Clear(cluster, Math.Min(from, headerLength), 4096 - Math.Min(from, headerLength));
        extensions.CopyTo(cluster, headerLength);
        BinaryPrimitives.WriteUInt32BigEndian(cluster.AsSpan(HeaderLengthOffset), (uint)headerLength);
        HeaderPatch.SetBytes(path, 0, cluster);
    }

    public static TheoryData<string> RefcountDamage => new() { "table-past-end", "table-misaligned", "no-clusters", "block-past-end", "reserved-bits", "empty-table" };

    [Theory]
    [MemberData(nameof(RefcountDamage))]
    public void DamagedRefcountsAreReadAroundAndSaidSo(string damage)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        byte[] truth = QemuView(path, temp);
        long table = (long)HeaderPatch.GetUInt64(path, RefcountTableOffsetOffset);
        switch (damage)
        {
            case "table-past-end": HeaderPatch.SetUInt64(path, RefcountTableOffsetOffset, 1UL << 40); break;
            case "table-misaligned": HeaderPatch.SetUInt64(path, RefcountTableOffsetOffset, (ulong)table + 512); break;
            case "no-clusters": HeaderPatch.SetUInt32(path, RefcountTableClustersOffset, 0); break;
            case "block-past-end": HeaderPatch.SetUInt64(path, table, 1UL << 40); break;
            case "reserved-bits": HeaderPatch.SetUInt64(path, table, HeaderPatch.GetUInt64(path, table) | 1); break;
            case "empty-table": HeaderPatch.SetBytes(path, table, new byte[65536]); break;
        }

        AssertSame(truth, OurView(path, out var warnings), damage);
        Assert.Contains("refcount", Assert.Single(warnings));
        Assert.Contains(path, warnings[0]);
        AssertNotWritten(path, "refcount");
    }

    public static TheoryData<string> SnapshotDamage => new() { "table-past-end", "table-misaligned", "too-many", "l1-past-end", "extra-data" };

    [Theory]
    [MemberData(nameof(SnapshotDamage))]
    public void DamagedSnapshotTablesAreReadAroundAndSaidSo(string damage)
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        Qemu.Img("snapshot", "-c", "before", path);
        Qemu.Io(path, "qcow2", "write -P 0x77 30m 64k"); // the current disk differs from the snapshot
        byte[] truth = QemuView(path, temp);
        long table = (long)HeaderPatch.GetUInt64(path, SnapshotsOffsetOffset);
        switch (damage)
        {
            case "table-past-end": HeaderPatch.SetUInt64(path, SnapshotsOffsetOffset, 1UL << 40); break;
            case "table-misaligned": HeaderPatch.SetUInt64(path, SnapshotsOffsetOffset, (ulong)table + 8); break;
            case "too-many": HeaderPatch.SetUInt32(path, NbSnapshotsOffset, 1_000_000); break;
            case "l1-past-end": HeaderPatch.SetUInt64(path, table, 1UL << 40); break;
            case "extra-data": HeaderPatch.SetUInt32(path, table + 36, 1 << 20); break;
        }

        AssertSame(truth, OurView(path, out var warnings), damage);
        Assert.Contains("snapshot", Assert.Single(warnings));
    }

    [Fact]
    public void ASoundImageHasNoWarningsAndTakesABitmap()
    {
        using var temp = new TempFolder();
        string path = MakeImage(temp);
        Qemu.Img("snapshot", "-c", "s1", path);
        AssertSame(QemuView(path, temp), OurView(path, out var warnings), "qemu");
        Assert.Empty(warnings);
        Assert.Null(Qcow2BitmapEditor.WhyNotWritable(path));
        Qcow2BitmapEditor editor = Qcow2BitmapEditor.Find()!;
        Assert.True(editor.TryAdd(path, "vmcheckpoint-test", out string error), error);
    }

    [Fact]
    public void ABackingFilesWarningsAreTheOverlays()
    {
        using var temp = new TempFolder();
        string basePath = MakeImage(temp, "base.qcow2");
        HeaderPatch.SetUInt64(basePath, RefcountTableOffsetOffset, 1UL << 40);
        string top = temp.File("top.qcow2");
        Qemu.CreateQcow2(top, "", "64M", "base.qcow2", "qcow2");
        Qemu.Io(top, "qcow2", "write -P 0x99 2m 64k");
        AssertSame(QemuView(top, temp), OurView(top, out var warnings), "qemu");
        Assert.Contains(basePath, Assert.Single(warnings));
    }

    [Fact]
    public void AVhdBackingFile()
    {
        using var temp = new TempFolder();
        string basePath = temp.File("base.vhd");
        Qemu.Img("create", "-q", "-f", "vpc", "-o", "force_size=on", basePath, "16M");
        Qemu.Io(basePath, "vpc", "write -P 0x12 0 3m", "write -P 0x13 10m 4k");
        string top = temp.File("top.qcow2");
        Qemu.CreateQcow2(top, "", "16M", "base.vhd", "vpc");
        Qemu.Io(top, "qcow2", "write -P 0x14 1m 64k");
        AssertSame(QemuView(top, temp), OurView(top, out _), "qemu");
    }

    [Fact]
    public void TablesAreAllCheckedBeforeABitmapIsWritten()
    {
        // An L2 table far into the disk points past the end: opening does not read it, CheckTables does, and the
        // bitmap editor refuses to write into the image before reading it would have found the damage.
        using var temp = new TempFolder();
        string path = temp.File("big.qcow2");
        Qemu.CreateQcow2(path, "", "2G");
        Qemu.Io(path, "qcow2", "write -P 0x11 0 64k", "write -P 0x22 1800m 64k");
        long l1 = (long)HeaderPatch.GetUInt64(path, L1TableOffsetOffset);
        long farL2 = (long)(HeaderPatch.GetUInt64(path, l1 + 3 * 8) & OffsetMask); // the L2 table of 1.5-2 GiB
        long index = ((1800L << 20) >> 16) & 8191;
        HeaderPatch.SetUInt64(path, farL2 + index * 8, (1UL << 40) | FlagCopied);

        using (IDiskImage image = DiskImage.Open(path))
        {
            var buffer = new byte[65536];
            image.Read(0, buffer, 0, buffer.Length); // the near data reads
            Assert.Contains("past the end", Assert.Throws<CorruptImageException>(() => DiskImage.CheckTables(image)).Message);
        }

        AssertNotWritten(path, "past the end");
    }
}
