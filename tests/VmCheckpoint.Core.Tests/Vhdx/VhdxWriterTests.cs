using Xunit;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Tests.Vhdx;

public sealed class VhdxWriterTests
{
    private const int MiB = 1024 * 1024;

    /// <summary>Writes <paramref name="data"/> in ascending pieces of uneven sizes and alignments, skipping some ranges.</summary>
    private static void WriteInPieces(IDiskImageWriter writer, byte[] data, int seed)
    {
        var random = new Random(seed);
        for (long at = 0; at < data.Length;)
        {
            int n = (int)Math.Min(random.Next(1, 300_000), data.Length - at);
            if (random.Next(4) != 0 || data.AsSpan((int)at, n).IndexOfAnyExcept((byte)0) >= 0)
                writer.Write(at, data, (int)at, n);
            at += n;
        }
    }

    private static byte[] SampleData(long size, int seed)
    {
        var data = new byte[size];
        var random = new Random(seed);
        for (int i = 0; i < 12; i++)
        {
            int at = random.Next((int)size - 70_000);
            random.NextBytes(data.AsSpan(at, random.Next(1, 70_000)));
        }
        data[0] = 1;
        data[^1] = 2;
        data[3 * MiB - 1] = 3;  // the last byte of a block
        return data;
    }

    [Theory]
    [InlineData(11L * MiB + 512, MiB, 512)]
    [InlineData(40L * MiB, 32 * MiB, 512)]
    [InlineData(9L * MiB + 4096, 2 * MiB, 4096)]
    public void Dynamic_image_passes_qemu_check_and_compare(long size, int blockSize, int sectorSize)
    {
        using var temp = new TempFolder();
        string image = temp.File("out.vhdx"), raw = temp.File("expected.raw");
        byte[] data = SampleData(size, 7);
        File.WriteAllBytes(raw, data);
        using (VhdxImageWriter writer = VhdxImageWriter.CreateDynamic(image, size, blockSize, sectorSize))
        {
            WriteInPieces(writer, data, 3);
            writer.Complete();
        }
        if (sectorSize == 512)
        {
            Tool.Run("qemu-img", "check", "-q", "-f", "vhdx", image);
            Tool.Run("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", raw, image);
        }
        else if (Tool.HasPyVhdi())
        {
            // qemu 7.2 refuses 4096-byte logical sectors; libvhdi reads them.
            string viaLibvhdi = temp.File("libvhdi.raw");
            Tool.PyVhdiToRaw(image, null, viaLibvhdi);
            Assert.True(data.AsSpan().SequenceEqual(File.ReadAllBytes(viaLibvhdi)), "libvhdi reads the image differently");
        }
        using (VhdxImage read = VhdxImage.Open(image))
        {
            Assert.Equal(data, ImageBytes.ReadAll(read));
            ImageBytes.AssertExtentsCover(read, data);
        }
        // Sparse: far less on disk than the data blocks the writes touched, and never the whole disk.
        Assert.True(Tool.AllocatedBytes(image) < 4 * MiB + 2 * MiB, $"{Tool.AllocatedBytes(image)} bytes allocated");
    }

    [Fact]
    public void Empty_dynamic_image_is_valid_and_has_no_data()
    {
        using var temp = new TempFolder();
        string image = temp.File("empty.vhdx");
        using (var writer = VhdxImageWriter.CreateDynamic(image, 300L * MiB, 256 * MiB))
        {
            writer.Write(0, new byte[MiB], 0, MiB);
            writer.Complete();
        }
        Tool.Run("qemu-img", "check", "-q", "-f", "vhdx", image);
        using VhdxImage read = VhdxImage.Open(image);
        Assert.Empty(read.GetDataExtents(0, read.VirtualSize));
    }

    [Fact]
    public void Rejects_out_of_order_and_past_end_writes()
    {
        using var temp = new TempFolder();
        using var writer = VhdxImageWriter.CreateDynamic(temp.File("x.vhdx"), 4 * MiB, MiB);
        writer.Write(4096, new byte[10], 0, 10);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write(4000, new byte[10], 0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Write(4 * MiB - 5, new byte[10], 0, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => VhdxImageWriter.CreateDynamic(temp.File("y.vhdx"), 1000, MiB));
    }

    [Fact]
    public void Differencing_child_reads_as_parent_overlaid_with_its_writes()
    {
        using var temp = new TempFolder();
        const long size = 6L * MiB + 512;
        string parent = temp.File("parent.vhdx");
        Tool.Run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", parent, size.ToString());
        Tool.QemuIo(parent, $"write -P 0x11 0 {3 * MiB}");
        Tool.QemuIo(parent, $"write -P 0x22 {5 * MiB} {MiB + 512}");
        byte[] expected;
        using (VhdxImage p = VhdxImage.Open(parent)) expected = ImageBytes.ReadAll(p);

        Directory.CreateDirectory(temp.File("children"));
        string child = temp.File(Path.Combine("children", "child.vhdx"));
        var writes = new List<(long Offset, byte[] Data)>
        {
            (100, Filled(300, 0x77)),                 // partial sectors over parent data
            (MiB - 1000, Filled(3000, 0x88)),          // across a block boundary
            (2L * MiB, new byte[MiB]),                 // a whole block of zeros hiding the parent
            (4L * MiB + 512, Filled(1024, 0x99)),      // over a block the parent lacks
            (5L * MiB + 4096, new byte[512]),          // one zero sector inside parent data
            (size - 512, Filled(512, 0xEE)),           // the last sector
        };
        using (var writer = VhdxImageWriter.CreateDifferencing(child, parent, blockSize: MiB))
        {
            foreach (var (offset, data) in writes)
            {
                writer.Write(offset, data, 0, data.Length);
                Buffer.BlockCopy(data, 0, expected, (int)offset, data.Length);
            }
            writer.Complete();
        }

        using (VhdxImage read = VhdxImage.Open(child))
        {
            Assert.NotNull(read.Parent);
            Assert.Equal(expected, ImageBytes.ReadAll(read));
            ImageBytes.AssertExtentsCover(read, expected);
            var piece = new byte[7000];
            read.Read(MiB - 3500, piece, 0, piece.Length);
            Assert.Equal(expected.AsSpan(MiB - 3500, 7000).ToArray(), piece);
        }
        if (Tool.HasPyVhdi())
        {
            string raw = temp.File("libvhdi.raw");
            Tool.PyVhdiToRaw(child, parent, raw);
            Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(raw)), "libvhdi reads the child differently");
        }

        // A grandchild through two levels of parents.
        string grandchild = temp.File("grandchild.vhdx");
        using (var writer = VhdxImageWriter.CreateDifferencing(grandchild, child, blockSize: 2 * MiB))
        {
            writer.Write(3L * MiB + 7, Filled(10, 0x42), 0, 10);
            Buffer.BlockCopy(Filled(10, 0x42), 0, expected, 3 * MiB + 7, 10);
            writer.Complete();
        }
        using (VhdxImage read = VhdxImage.Open(grandchild))
            Assert.Equal(expected, ImageBytes.ReadAll(read));
    }

    private static byte[] Filled(int count, byte value) => Enumerable.Repeat(value, count).ToArray();
}
