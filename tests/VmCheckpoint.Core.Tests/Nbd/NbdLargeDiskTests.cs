using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.Nbd;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Nbd;

/// <summary>
/// A sparse 6 GiB disk: block status must be asked in pieces under 2^32 bytes, and offsets past 4 GiB must survive
/// every conversion on the way to libnbd and back.
/// </summary>
public sealed class NbdLargeDiskTests
{
    private const long K = 1024, M = 1024 * K, G = 1024 * M;

    [Fact]
    public void ExtentsAndReadsWorkPast4GiB()
    {
        using var folder = new TempFolder();
        string image = folder.File("big.qcow2"), random = folder.File("random");
        byte[] bytes = NbdImageFixture.RandomBytes(1 * M, seed: 2);
        File.WriteAllBytes(random, bytes);

        var straddle = new DiskExtent(4 * G - 64 * K, 128 * K);
        var at5G = new DiskExtent(5 * G, 1 * M);
        var afterBitmap = new DiskExtent(5 * G + 2 * M + 1, 64 * K);
        Qemu.CreateQcow2(image, "", "6G");
        Qemu.Io(image, "qcow2", NbdImageFixture.Write(random, straddle), NbdImageFixture.Write(random, at5G));
        Qemu.Img("bitmap", "--add", image, "bm0");
        Qemu.Io(image, "qcow2", NbdImageFixture.Write(random, afterBitmap));

        using var server = NbdServer.QemuNbd(image, folder.File("nbd.sock"), bitmap: "bm0");
        using NbdDiskImage disk = NbdDiskImage.Connect(server.SocketPath, NbdServer.Export, "qemu:dirty-bitmap:bm0");

        Assert.Equal(6 * G, disk.VirtualSize);
        // The write after the bitmap touched two 64 KiB clusters. Its data extent is finer than that: qemu's
        // allocation status looks through the qcow2 to the holes of the host file under it.
        var afterClusters = new DiskExtent(5 * G + 2 * M, 128 * K);
        List<DiskExtent> data = disk.GetDataExtents(0, disk.VirtualSize).ToList();
        Assert.Equal(3, data.Count);
        Assert.Equal(new[] { straddle, at5G }, data.Take(2));
        Assert.True(data[2].Offset >= afterClusters.Offset && data[2].Offset <= afterBitmap.Offset
            && data[2].End >= afterBitmap.End && data[2].End <= afterClusters.End, data[2].ToString());
        Assert.Equal(new[] { afterClusters }, disk.GetChangedExtents());
        Assert.Equal(new[] { new DiskExtent(4 * G, 64 * K) }, disk.GetDataExtents(4 * G, 1 * G));

        // 24 MiB around 5 GiB: zeros, the 1 MiB write, zeros, the write after the bitmap.
        var expected = new byte[24 * M];
        long start = 5 * G - 8 * M;
        foreach (DiskExtent e in new[] { at5G, afterBitmap })
            Array.Copy(bytes, 0, expected, e.Offset - start, e.Length);
        var actual = new byte[expected.Length];
        disk.Read(start, actual, 0, actual.Length);
        Assert.True(expected.AsSpan().SequenceEqual(actual), "bytes around 5 GiB differ");

        var across4G = new byte[straddle.Length];
        disk.Read(straddle.Offset, across4G, 0, across4G.Length);
        Assert.True(bytes.AsSpan(0, across4G.Length).SequenceEqual(across4G), "bytes across 4 GiB differ");
    }
}
