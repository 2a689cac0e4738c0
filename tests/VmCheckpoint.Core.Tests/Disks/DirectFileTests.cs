using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>O_DIRECT reads and writes against the file's own bytes: any offset and length in, the same bytes out.</summary>
public sealed class DirectFileTests
{
    private const int Size = 1_000_003; // not a whole number of 4 KiB blocks: the last read stops short

    [Theory]
    [InlineData(0L, 65536, 65536)]
    [InlineData(1L, 100_000, 100_000)]
    [InlineData(4095L, 300_000, 300_000)]
    [InlineData(Size - 70_000L, 70_000, 70_000)]
    [InlineData(Size - 1000L, 70_000, 1000)]      // crosses the end of the file
    [InlineData(Size + 5L, 70_000, 0)]            // past it
    public void ReadsAnyRangeAsTheFileHoldsIt(long offset, int count, int expected)
    {
        using var temp = new TempFolder();
        string path = temp.File("data.bin");
        var bytes = new byte[Size];
        new Random(3).NextBytes(bytes);
        File.WriteAllBytes(path, bytes);
        using var direct = DirectFile.TryOpenForReading(path);
        Assert.True(direct != null || !OperatingSystem.IsLinux(), "O_DIRECT should open on this machine's temporary folder");
        if (direct is null) return;
        var buffer = new byte[count + 10];
        Array.Fill(buffer, (byte)0xEE);
        Assert.Equal(expected, direct.TryRead(offset, buffer, 7, count));
        Assert.True(buffer.AsSpan(7, expected).SequenceEqual(bytes.AsSpan((int)Math.Min(offset, Size), expected)));
        Assert.Equal(0xEE, buffer[6]);
        if (expected > 0) Assert.Equal(0xEE, buffer[7 + expected]); // nothing written past what the file held
        Assert.Equal(-1, direct.TryRead(offset, buffer, 0, DirectFile.MinimumRead - 1)); // small reads are the caller's
    }

    [Fact]
    public void OnlyLocalDiskFileSystemsGoDirect()
    {
        if (!OperatingSystem.IsLinux()) return;
        using var temp = new TempFolder();
        string local = temp.File("x");
        File.WriteAllBytes(local, new byte[1]);
        Assert.True(DirectFile.OnLocalDisk(local), "this machine's temporary folder is on ext4");
        Assert.False(DirectFile.OnLocalDisk("/proc/self/status")); // procfs
        Assert.False(DirectFile.OnLocalDisk("/dev/null"));         // devtmpfs
        Assert.Null(DirectFile.TryOpenForReading("/proc/self/status"));
    }

    [Fact]
    public void WritesOnlyAlignedRunsAndTheyLandWhereTheyBelong()
    {
        using var temp = new TempFolder();
        string path = temp.File("out.bin");
        File.WriteAllBytes(path, new byte[0]);
        using var direct = DirectFile.TryOpenForWriting(path);
        Assert.True(direct != null || !OperatingSystem.IsLinux(), "O_DIRECT should open on this machine's temporary folder");
        if (direct is null) return;
        var data = new byte[5 * 1024 * 1024 + 8192 + 3]; // more than the staging buffer holds
        new Random(4).NextBytes(data);
        Assert.False(direct.TryWrite(100, data, 0, 8192));    // unaligned offset
        Assert.False(direct.TryWrite(8192, data, 0, 1000));   // unaligned length
        Assert.True(direct.TryWrite(8192, data, 3, data.Length - 3));
        direct.Dispose();
        var back = File.ReadAllBytes(path);
        Assert.Equal(8192 + data.Length - 3, back.Length);
        Assert.True(back.AsSpan(0, 8192).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(back.AsSpan(8192).SequenceEqual(data.AsSpan(3)));
    }
}
