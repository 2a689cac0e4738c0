using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.Nbd;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Nbd;

/// <summary>
/// A 64 MiB qcow2 written by qemu-io before and after a persistent dirty bitmap was added, exported by qemu-nbd with
/// that bitmap; the raw guest view by qemu-img convert is what reads are compared with.
/// </summary>
public sealed class NbdImageFixture : IDisposable
{
    public const long Size = 64 << 20;
    private const long K = 1024, M = 1024 * 1024;

    /// <summary>Written before the bitmap: data, and a range written then zeroed (a zero cluster, not data).</summary>
    public static readonly DiskExtent[] Before = { new(0, 1 * M), new(8 * M, 100 * K) };
    public static readonly DiskExtent Zeroed = new(40 * M, 1 * M);

    /// <summary>Written after the bitmap, and how the bitmap (64 KiB granularity) must record them.</summary>
    public static readonly DiskExtent[] After = { new(20 * M, 200 * K), new(33 * M + 3 * K, 5 * K), new(8 * M + 64 * K, 4 * K) };
    public static readonly DiskExtent[] AfterDirty = { new(8 * M + 64 * K, 64 * K), new(20 * M, 256 * K), new(33 * M, 64 * K) };

    private readonly TempFolder _folder = new();
    private readonly NbdServer _server;

    public NbdImageFixture()
    {
        Image = _folder.File("disk.qcow2");
        string random = _folder.File("random");
        File.WriteAllBytes(random, RandomBytes(2 * M, seed: 1));

        Qemu.CreateQcow2(Image, "", Size.ToString());
        Qemu.Io(Image, "qcow2",
            Write(random, Before[0]), Write(random, Before[1]), Write(random, Zeroed), $"write -z {Zeroed.Offset} {Zeroed.Length}");
        Qemu.Img("bitmap", "--add", Image, "bm0");
        // qemu-io opens the qcow2 read-write with its enabled persistent bitmaps, so these writes mark bm0 dirty.
        Qemu.Io(Image, "qcow2", After.Select(e => Write(random, e)).ToArray());

        RawPath = ConvertToRaw(Image, _folder.File("disk.raw"));
        Raw = File.ReadAllBytes(RawPath);
        _server = NbdServer.QemuNbd(Image, _folder.File("nbd.sock"), bitmap: "bm0");
    }

    public string Image { get; }
    /// <summary>The guest view as a sparse raw file, and its bytes.</summary>
    public string RawPath { get; }
    public byte[] Raw { get; }

    public string TempFile(string name) => _folder.File(name);
    public string SocketPath => _server.SocketPath;

    public NbdDiskImage Connect(string? bitmap = "qemu:dirty-bitmap:bm0") =>
        NbdDiskImage.Connect(SocketPath, NbdServer.Export, bitmap, sourcePath: Image);

    internal static string Write(string file, DiskExtent e) => $"write -s {file} {e.Offset} {e.Length}";

    internal static byte[] RandomBytes(long n, int seed)
    {
        var bytes = new byte[n];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    internal static string ConvertToRaw(string image, string raw)
    {
        Qemu.Img("convert", "-f", "qcow2", "-O", "raw", image, raw);
        return raw;
    }

    public void Dispose()
    {
        _server.Dispose();
        _folder.Dispose();
    }
}

public sealed class NbdDiskImageTests : IClassFixture<NbdImageFixture>
{
    private const long M = 1024 * 1024;
    private readonly NbdImageFixture _f;

    public NbdDiskImageTests(NbdImageFixture fixture) => _f = fixture;

    [Fact]
    public void ReportsSizeFormatAndPath()
    {
        using NbdDiskImage disk = _f.Connect();
        Assert.Equal(NbdImageFixture.Size, disk.VirtualSize);
        Assert.Equal(DiskFormat.Raw, disk.Format);
        Assert.Equal(_f.Image, disk.Path);
        Assert.Equal("qemu:dirty-bitmap:bm0", disk.DirtyBitmapContext);
    }

    [Fact]
    public void ReadsTheGuestViewByteForByte()
    {
        using NbdDiskImage disk = _f.Connect();
        // 20 MiB reads at an odd offset cross the 8 MiB pread chunks and every written range.
        var buffer = new byte[20 * M + 7];
        for (long offset = 0; offset < disk.VirtualSize; offset += buffer.Length - 7)
        {
            int n = (int)Math.Min(buffer.Length - 7, disk.VirtualSize - offset);
            disk.Read(offset, buffer, 7, n);
            Assert.True(buffer.AsSpan(7, n).SequenceEqual(_f.Raw.AsSpan((int)offset, n)), $"bytes differ in [{offset}, +{n})");
        }
    }

    [Fact]
    public void DataExtentsCoverEveryNonZeroByteAndSkipHolesAndZeroClusters()
    {
        using NbdDiskImage disk = _f.Connect();
        List<DiskExtent> extents = disk.GetDataExtents(0, disk.VirtualSize).ToList();

        AssertSortedAndMerged(extents);
        AssertCovers(extents, _f.Raw, 0);
        Assert.DoesNotContain(extents, e => Intersects(e, NbdImageFixture.Zeroed));
        Assert.DoesNotContain(extents, e => Intersects(e, new DiskExtent(41 * M, 23 * M)));
        Assert.True(extents.Sum(e => e.Length) <= 3 * M, string.Join(", ", extents));
    }

    [Fact]
    public void DataExtentsOfASubRangeAreClippedToIt()
    {
        using NbdDiskImage disk = _f.Connect();
        long offset = 512 * 1024 + 1, length = 8 * M;
        List<DiskExtent> extents = disk.GetDataExtents(offset, length).ToList();

        Assert.Equal(new DiskExtent(offset, 1 * M - offset), extents[0]);
        Assert.All(extents, e => Assert.True(e.Offset >= offset && e.End <= offset + length, e.ToString()));
        Assert.Empty(disk.GetDataExtents(30 * M, 0));
    }

    [Fact]
    public void ChangedExtentsAreExactlyTheWritesAfterTheBitmapRoundedTo64K()
    {
        using NbdDiskImage disk = _f.Connect();
        Assert.Equal(NbdImageFixture.AfterDirty, disk.GetChangedExtents());
    }

    [Fact]
    public void WithoutABitmapThereAreNoChangedExtentsToAskFor()
    {
        using NbdDiskImage disk = _f.Connect(bitmap: null);
        Assert.Null(disk.DirtyBitmapContext);
        Assert.Throws<InvalidOperationException>(() => disk.GetChangedExtents());
        Assert.NotEmpty(disk.GetDataExtents(0, disk.VirtualSize));
    }

    [Fact]
    public void ABitmapTheServerDoesNotExportIsRefusedAtConnect()
    {
        var e = Assert.Throws<NbdException>(() => _f.Connect("qemu:dirty-bitmap:nosuch"));
        Assert.Contains("qemu:dirty-bitmap:nosuch", e.Message);
    }

    [Fact]
    public void AMissingExportIsRefusedAtConnect()
    {
        var e = Assert.Throws<NbdException>(() => NbdDiskImage.Connect(_f.SocketPath, "nosuch"));
        Assert.Contains("nosuch", e.Message);
    }

    [Fact]
    public void ConnectsByUri()
    {
        using NbdDiskImage disk = NbdDiskImage.ConnectUri($"nbd+unix:///{NbdServer.Export}?socket={_f.SocketPath}", "qemu:dirty-bitmap:bm0");
        Assert.Equal(NbdImageFixture.Size, disk.VirtualSize);
        Assert.Equal(NbdImageFixture.AfterDirty, disk.GetChangedExtents());
    }

    [Fact]
    public void ReadingPastTheEndOrAfterDisposeThrows()
    {
        NbdDiskImage disk = _f.Connect();
        var buffer = new byte[4096];
        Assert.Throws<ArgumentOutOfRangeException>(() => disk.Read(disk.VirtualSize - 4095, buffer, 0, 4096));
        Assert.Throws<ArgumentOutOfRangeException>(() => disk.GetDataExtents(disk.VirtualSize - 1, 2));
        disk.Read(disk.VirtualSize - 4096, buffer, 0, 4096);
        disk.Dispose();
        disk.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disk.Read(0, buffer, 0, 4096));
    }

    [Fact]
    public void AMissingSocketThrowsNbdExceptionNamingIt()
    {
        using var folder = new TempFolder();
        string socket = folder.File("none.sock");
        var e = Assert.Throws<NbdException>(() => NbdDiskImage.Connect(socket, "vda"));
        Assert.Contains(socket, e.Message);
        Assert.Contains("No such file", e.Message);
        Assert.Equal(2, e.Errno); // ENOENT
    }

    internal static void AssertSortedAndMerged(IReadOnlyList<DiskExtent> extents)
    {
        for (int i = 0; i < extents.Count; i++)
        {
            Assert.True(extents[i].Length > 0, extents[i].ToString());
            if (i > 0) Assert.True(extents[i - 1].End < extents[i].Offset, $"{extents[i - 1]} then {extents[i]}");
        }
    }

    /// <summary>Every non-zero byte of <paramref name="raw"/> (guest offset <paramref name="rawOffset"/>) lies in an extent.</summary>
    internal static void AssertCovers(IReadOnlyList<DiskExtent> extents, byte[] raw, long rawOffset)
    {
        int next = 0;
        for (int i = 0; i < raw.Length; i++)
        {
            if (raw[i] == 0) continue;
            long at = rawOffset + i;
            while (next < extents.Count && extents[next].End <= at) next++;
            Assert.True(next < extents.Count && extents[next].Offset <= at, $"non-zero byte at {at} is outside the data extents");
        }
    }

    private static bool Intersects(DiskExtent a, DiskExtent b) => a.Offset < b.End && b.Offset < a.End;
}
