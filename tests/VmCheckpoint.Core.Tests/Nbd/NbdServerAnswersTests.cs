using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.Nbd;
using Xunit;

namespace VmCheckpoint.Core.Tests.Nbd;

/// <summary>Servers that answer block status unlike qemu-nbd, made with nbdkit filters over the fixture's raw view.</summary>
public sealed class NbdServerAnswersTests : IClassFixture<NbdImageFixture>
{
    private readonly NbdImageFixture _f;

    public NbdServerAnswersTests(NbdImageFixture fixture) => _f = fixture;

    [Fact]
    public void AServerAnsweringForLessThanAskedIsAskedAgain()
    {
        string log = _f.TempFile("short-answers.log");
        // blocksize maxlen=1M answers each block-status request for at most 1 MiB of the 64 MiB asked.
        using var server = NbdServer.Nbdkit(_f.TempFile("short.sock"), new[] { "log", "blocksize" }, "file", _f.RawPath, "maxlen=1M", "logfile=" + log);
        using NbdDiskImage disk = NbdDiskImage.Connect(server.SocketPath, NbdServer.Export);

        List<DiskExtent> extents = disk.GetDataExtents(0, disk.VirtualSize).ToList();

        NbdDiskImageTests.AssertSortedAndMerged(extents);
        NbdDiskImageTests.AssertCovers(extents, _f.Raw, 0);
        Assert.True(extents.Sum(e => e.Length) <= 3 * 1024 * 1024, string.Join(", ", extents));
        int requests = File.ReadLines(log).Count(l => l.Contains("Extents"));
        Assert.True(requests >= 64, $"{requests} block-status requests");
    }

    [Fact]
    public void WithoutAllocationStatusTheWholeRangeMayHoldData()
    {
        using var server = NbdServer.Nbdkit(_f.TempFile("noextents.sock"), new[] { "noextents" }, "file", _f.RawPath);
        using NbdDiskImage disk = NbdDiskImage.Connect(server.SocketPath, NbdServer.Export);

        Assert.Equal(new[] { new DiskExtent(4096, 1 << 20) }, disk.GetDataExtents(4096, 1 << 20));
        var bytes = new byte[disk.VirtualSize];
        disk.Read(0, bytes, 0, bytes.Length);
        Assert.True(bytes.AsSpan().SequenceEqual(_f.Raw));
    }

    [Fact]
    public void AFailedReadThrowsNbdExceptionWithTheServersErrno()
    {
        using var server = NbdServer.Nbdkit(_f.TempFile("error.sock"), new[] { "error" }, "file", _f.RawPath, "error-pread-rate=1", "error=EIO");
        using NbdDiskImage disk = NbdDiskImage.Connect(server.SocketPath, NbdServer.Export);

        var buffer = new byte[4096];
        var e = Assert.Throws<NbdException>(() => disk.Read(8192, buffer, 0, buffer.Length));
        Assert.Equal(5, e.Errno); // EIO
        Assert.Contains("read [8192, +4096)", e.Message);
        // A failed command leaves the connection usable.
        Assert.NotEmpty(disk.GetDataExtents(0, disk.VirtualSize));
    }
}
