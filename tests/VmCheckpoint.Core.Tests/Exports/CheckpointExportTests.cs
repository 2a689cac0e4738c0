using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Exports;
using VmCheckpoint.Core.Hypervisors.Nbd;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Exports;

/// <summary>
/// A checkpoint's disk served by <see cref="VmCheckpoint.Core.Exports.NbdServer"/> straight from a real repository, read
/// by independent clients: libnbd (NbdDiskImage) and qemu's own NBD client (qemu-img, qemu-io).
/// </summary>
public sealed class CheckpointExportTests : IDisposable
{
    private const int Bs = TestRepository.BlockSize;
    private const int Blocks = 40;
    private readonly TestRepository _t = new();
    private readonly CheckpointManifest _manifest;
    private readonly byte[] _guest;
    private readonly string _image;
    private readonly string _socket;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly BlockStore _store;
    private readonly List<string> _log = new();

    public CheckpointExportTests()
    {
        _image = _t.File("disk.raw");
        // Data in most blocks, holes between; the last block is short (the size is not a whole number of blocks).
        var writes = Enumerable.Range(0, Blocks).Where(i => i % 5 != 2 && i != 17 && i != 18)
            .Select(i => ((long)i * Bs, ImageFiles.Noise(i, Bs - (i % 3) * 700))).ToArray();
        _guest = ImageFiles.CreateRaw(_image, (long)Blocks * Bs + 4096 * 3, writes);
        _manifest = _t.Checkpoint("vm", _image);
        _socket = _t.File("nbd.sock");
        _store = _t.Repository.OpenStore(CancellationToken.None);
        var exports = _manifest.Disks.Select(d => (IExportedDisk)new CheckpointDiskExport(_store, _t.Layout, d, _manifest.BlockSize)).ToList();
        var server = new VmCheckpoint.Core.Exports.NbdServer(_socket, exports, line => { lock (_log) _log.Add(line); });
        using var listening = new ManualResetEventSlim();
        server.Listening = listening.Set;
        _thread = new Thread(() => server.Run(_stop.Token)) { IsBackground = true };
        _thread.Start();
        Assert.True(listening.Wait(TimeSpan.FromSeconds(10)), "the server did not listen");
    }

    private string Uri => $"nbd+unix:///disk?socket={_socket}";

    [Fact]
    public void LibnbdReadsTheCheckpointsBytes()
    {
        using var nbd = NbdDiskImage.Connect(_socket, "disk");
        Assert.Equal(_guest.Length, nbd.VirtualSize);
        var read = new byte[_guest.Length];
        // Odd sizes and offsets across block boundaries, as clients read.
        for (long offset = 0; offset < read.Length; offset += 300_001)
            nbd.Read(offset, read, (int)offset, (int)Math.Min(300_001, read.Length - offset));
        Assert.True(_guest.AsSpan().SequenceEqual(read));
    }

    [Fact]
    public void BlockStatusNamesTheHolesSoCopiesStaySparse()
    {
        using var nbd = NbdDiskImage.Connect(_socket, "disk");
        var data = nbd.GetDataExtents(0, nbd.VirtualSize).ToList();
        var expected = _manifest.Disks[0].Blocks;
        long covered = data.Sum(e => e.Length);
        long listed = Enumerable.Range(0, expected.Count).Sum(i => Math.Min(Bs, _guest.Length - expected.IndexAt(i) * Bs));
        Assert.Equal(listed, covered);
        foreach (var e in data)
            for (long b = e.Offset / Bs; b < (e.End + Bs - 1) / Bs; b++) Assert.NotNull(expected.Find(b));
        Assert.DoesNotContain(data, e => e.Offset <= 17L * Bs && e.End > 17L * Bs);
    }

    [Fact]
    public void QemuSeesTheSameDiskAndMapsItsHoles()
    {
        var compare = Qemu.Run("qemu-img", "compare", "-f", "raw", "-F", "raw", _image, Uri);
        Assert.True(compare.ExitCode == 0, compare.Stdout + compare.Stderr);
        var map = Qemu.Ok("qemu-img", "map", "--output=json", "-f", "raw", Uri);
        Assert.Contains("\"data\": false", map);
        Assert.Contains("\"data\": true", map);
    }

    [Fact]
    public void SeveralClientsReadAtOnce()
    {
        var failures = new List<Exception>();
        var threads = Enumerable.Range(0, 4).Select(k => new Thread(() =>
        {
            try
            {
                using var nbd = NbdDiskImage.Connect(_socket, "disk");
                var read = new byte[_guest.Length];
                for (int pass = 0; pass < 3; pass++)
                {
                    // Each client its own request size, so that they interleave differently.
                    int chunk = 40_000 + k * 25_000 + pass * 7;
                    for (long o = 0; o < read.Length; o += chunk)
                        nbd.Read(o, read, (int)o, (int)Math.Min(chunk, read.Length - o));
                    Assert.True(_guest.AsSpan().SequenceEqual(read));
                }
            }
            catch (Exception e) { lock (failures) failures.Add(e); }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Empty(failures);
    }

    [Fact]
    public void AFlippedByteInAPackFailsTheReadInsteadOfServingWrongBytes()
    {
        var entries = _t.PackFiles().SelectMany(p => TestRepository.PackEntries(p).Select(e => (Pack: p, Entry: e))).ToList();
        var victimHash = _manifest.Disks[0].Blocks.Find(11)!.Value;
        var victim = entries.Single(e => e.Entry.Hash == victimHash);
        TestRepository.FlipByte(victim.Pack, victim.Entry.Offset + 10, 0x40);

        using (var nbd = NbdDiskImage.Connect(_socket, "disk"))
        {
            var buffer = new byte[Bs];
            Assert.ThrowsAny<IOException>(() => nbd.Read(11L * Bs, buffer, 0, 4096));
            // The rest of the disk still reads, and a hole needs no block at all.
            nbd.Read(10L * Bs, buffer, 0, Bs);
            Assert.True(_guest.AsSpan((int)(10L * Bs), Bs).SequenceEqual(buffer));
        }
        // qemu's own client sees the failure too.
        var io = Qemu.Run("qemu-io", "-r", "-f", "raw", "-c", $"read {11L * Bs} 4096", Uri);
        Assert.Contains("error", io.Stdout + io.Stderr, StringComparison.OrdinalIgnoreCase);
        lock (_log) Assert.Contains(_log, l => l.Contains(victimHash.ToString()));
    }

    [Fact]
    public void AStoppedServerFailsItsClientsReads()
    {
        using var nbd = NbdDiskImage.Connect(_socket, "disk");
        var buffer = new byte[4096];
        nbd.Read(0, buffer, 0, buffer.Length);
        _stop.Cancel();
        Assert.True(_thread.Join(TimeSpan.FromSeconds(10)));
        Assert.ThrowsAny<Exception>(() => nbd.Read(0, buffer, 0, buffer.Length));
    }

    [Fact]
    public void AnExportNotServedIsRefusedAtConnect()
    {
        Assert.ThrowsAny<Exception>(() => NbdDiskImage.Connect(_socket, "nosuchdisk"));
        // The server goes on serving the others.
        using var nbd = NbdDiskImage.Connect(_socket, "disk");
        Assert.Equal(_guest.Length, nbd.VirtualSize);
    }

    [Fact]
    public void TheListOfExportsNamesTheDisk()
    {
        var info = Qemu.Run("nbdinfo", "--list", $"nbd+unix://?socket={_socket}");
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("disk", info.Stdout);
        Assert.Contains("base:allocation", info.Stdout);
    }

    [Fact]
    public void WritesAreRefused()
    {
        var io = Qemu.Run("qemu-io", "-f", "raw", "-c", "write 0 4096", Uri);
        Assert.NotEqual(0, io.ExitCode == 0 && !(io.Stdout + io.Stderr).Contains("rror") ? 0 : 1);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join(TimeSpan.FromSeconds(10));
        _store.Dispose();
        _t.Dispose();
    }
}
