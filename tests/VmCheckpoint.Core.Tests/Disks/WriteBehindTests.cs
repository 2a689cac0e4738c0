using System.Runtime.InteropServices;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

public sealed class WriteBehindTests
{
    [Fact]
    public void StartsWritebackPerChunkOnLinuxAndLeavesTheBytesAlone()
    {
        using var temp = new TempFolder();
        string path = temp.File("file.bin");
        var chunk = ImageFiles.Noise(3, (int)WriteBehind.Chunk);
        using (var file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, 1))
        {
            var writeBehind = new WriteBehind(file);
            for (int i = 0; i < 5; i++)
            {
                file.Write(chunk, 0, chunk.Length / 2);
                writeBehind.Written(file.Position);
                file.Write(chunk, chunk.Length / 2, chunk.Length - chunk.Length / 2);
                writeBehind.Written(file.Position);
            }
            // Ranges already started are not started again; a partial chunk waits for the final flush.
            file.Write(chunk, 0, 4096);
            writeBehind.Written(file.Position);
            Assert.Equal(RuntimeInformation.IsOSPlatform(OSPlatform.Linux) ? 5 : 0, writeBehind.Started);
            file.Flush(flushToDisk: true);
        }
        var bytes = File.ReadAllBytes(path);
        Assert.Equal(5 * chunk.Length + 4096, bytes.Length);
        for (int i = 0; i < 5; i++) Assert.True(bytes.AsSpan(i * chunk.Length, chunk.Length).SequenceEqual(chunk));
    }
}
