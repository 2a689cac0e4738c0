using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>The native (libzstd) and managed (ZstdSharp) block codecs write frames the other reads, and both refuse damage.</summary>
public sealed class BlockCodecTests
{
    private const int Block = 1 << 20;

    public static TheoryData<bool, bool, int> Pairs()
    {
        var data = new TheoryData<bool, bool, int>();
        foreach (bool writerNative in new[] { false, true })
            foreach (bool readerNative in new[] { false, true })
                foreach (int level in new[] { 1, 2, 3 })
                    data.Add(writerNative, readerNative, level);
        return data;
    }

    /// <summary>Half text-like (compressible), half noise: what a disk block looks like.</summary>
    private static byte[] SampleBlock()
    {
        var block = new byte[Block];
        var text = System.Text.Encoding.ASCII.GetBytes("usr/share/doc/some-package/changelog.Debian.gz 0644 root root ");
        for (int i = 0; i < Block / 2; i++) block[i] = text[i % text.Length];
        ImageFiles.Noise(7, Block / 2).CopyTo(block, Block / 2);
        return block;
    }

    [Fact]
    public void NativeLibraryLoadsHere()
    {
        // Debian 12 ships libzstd1 (qemu-utils and apt depend on it); the test machine must use the native codec.
        if (Environment.GetEnvironmentVariable(BlockCodec.EnvironmentVariable) == "managed") return;
        Assert.True(BlockCodec.NativeAvailable, BlockCodec.NativeUnavailableReason);
        Assert.Equal(2, BlockCodec.DefaultLevel);
        using var codec = new BlockCodec();
        Assert.True(codec.IsNative);
    }

    [Theory]
    [MemberData(nameof(Pairs))]
    public void EitherCodecReadsWhatTheOtherWrote(bool writerNative, bool readerNative, int level)
    {
        if ((writerNative || readerNative) && !BlockCodec.NativeAvailable) return;
        var block = SampleBlock();
        using var writer = new BlockCodec(level, writerNative);
        using var reader = new BlockCodec(level, readerNative);
        var compressed = new byte[BlockCodec.CompressBound(Block)];
        int n = writer.Compress(block, Block, compressed);
        Assert.InRange(n, 1, Block * 3 / 4);
        var back = new byte[Block];
        Assert.Equal(Block, reader.Decompress(compressed, n, back, Block));
        Assert.Equal(block, back);

        // A short block (a disk's tail) and a reused codec.
        n = writer.Compress(block, 1000, compressed);
        Assert.Equal(1000, reader.Decompress(compressed, n, back, 1000));
        Assert.Equal(block.AsSpan(0, 1000).ToArray(), back.AsSpan(0, 1000).ToArray());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DamagedOrOversizedFramesAreInvalidData(bool native)
    {
        if (native && !BlockCodec.NativeAvailable) return;
        var block = SampleBlock();
        using var codec = new BlockCodec(1, native);
        var compressed = new byte[BlockCodec.CompressBound(Block)];
        int n = codec.Compress(block, Block, compressed);
        var back = new byte[Block];

        // More bytes than the block may hold.
        Assert.Throws<InvalidDataException>(() => codec.Decompress(compressed, n, back, Block - 1));
        // A cut frame.
        Assert.Throws<InvalidDataException>(() => codec.Decompress(compressed, n / 2, back, Block));
        // Not a frame at all.
        var garbage = ImageFiles.Noise(9, 4096);
        Assert.Throws<InvalidDataException>(() => codec.Decompress(garbage, garbage.Length, back, Block));
        // The codec still works afterwards.
        Assert.Equal(Block, codec.Decompress(compressed, n, back, Block));
        Assert.Equal(block, back);
    }
}
