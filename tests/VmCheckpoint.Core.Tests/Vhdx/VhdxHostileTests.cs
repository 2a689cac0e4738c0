using System.Buffers.Binary;
using Xunit;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhdx;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Tests.Vhdx;

/// <summary>Corrupt and hostile images: each must fail with an error naming the file, never crash or hang.</summary>
public sealed class VhdxHostileTests
{
    // Layout of images from VhdxImageWriter: metadata at 2 MiB (items from +64 KiB), BAT at 3 MiB.
    private const long Metadata = 2 * MiB;
    private const long Items = Metadata + 64 * 1024;
    private const long Bat = 3 * MiB;

    private static string MakeDynamic(TempFolder temp, string name = "disk.vhdx", long size = 3 * MiB)
    {
        string path = temp.File(name);
        using var writer = VhdxImageWriter.CreateDynamic(path, size, MiB);
        var data = Enumerable.Range(0, 8192).Select(i => (byte)(i % 251 + 1)).ToArray();
        writer.Write(0, data, 0, data.Length);
        writer.Write(size - 4096, data, 0, 4096);
        writer.Complete();
        return path;
    }

    private static string MakeChild(TempFolder temp, string parent, string name)
    {
        string path = temp.File(name);
        using var writer = VhdxImageWriter.CreateDifferencing(path, parent, MiB);
        writer.Write(1000, new byte[] { 9, 9, 9 }, 0, 3);
        writer.Complete();
        return path;
    }

    private static void AssertCorrupt(string path, string expected)
    {
        var error = Assert.Throws<CorruptImageException>(() => VhdxImage.Open(path).Dispose());
        Assert.Contains(expected, error.Message);
        Assert.StartsWith(path, error.Message);
    }

    [Fact]
    public void Bad_checksum_in_both_headers()
    {
        using var temp = new TempFolder();
        string path = MakeDynamic(temp);
        ImageBytes.Patch(path, Header1Offset + 200, new byte[] { 1 });
        using (VhdxImage stillOpens = VhdxImage.Open(path)) Assert.Equal(3 * MiB, stillOpens.VirtualSize);
        ImageBytes.Patch(path, Header2Offset + 200, new byte[] { 1 });
        AssertCorrupt(path, "both headers are invalid");
    }

    [Fact]
    public void Not_a_vhdx_or_too_short()
    {
        using var temp = new TempFolder();
        string small = temp.File("small.vhdx");
        File.WriteAllBytes(small, new byte[4096]);
        AssertCorrupt(small, "smaller than the 1 MiB");
        string zeros = temp.File("zeros.vhdx");
        File.WriteAllBytes(zeros, new byte[2 * MiB]);
        AssertCorrupt(zeros, "not 'vhdxfile'");
    }

    [Fact]
    public void Overlapping_regions()
    {
        using var temp = new TempFolder();
        string path = MakeDynamic(temp);
        foreach (long table in new[] { RegionTable1Offset, RegionTable2Offset })
        {
            // Second entry (metadata) moved onto the BAT.
            var offset = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(offset, Bat);
            ImageBytes.Patch(path, table + RegionTableHeaderSize + RegionEntrySize + RegionEntryFileOffsetField, offset);
            ImageBytes.FixRegionChecksum(path, table);
        }
        AssertCorrupt(path, "overlaps");
    }

    [Fact]
    public void Region_past_end_of_file()
    {
        using var temp = new TempFolder();
        string path = MakeDynamic(temp);
        var offset = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(offset, 1L << 40);
        ImageBytes.Patch(path, RegionTable1Offset + RegionTableHeaderSize + RegionEntryFileOffsetField, offset);
        ImageBytes.FixRegionChecksum(path, RegionTable1Offset);
        AssertCorrupt(path, "past the end of the file");
    }

    [Fact]
    public void Bat_entry_past_end_of_file()
    {
        using var temp = new TempFolder();
        string path = MakeDynamic(temp);
        var entry = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(entry, (1000UL << 20) | PayloadFullyPresent);
        ImageBytes.Patch(path, Bat, entry);
        AssertCorrupt(path, "payload block 0");
        BinaryPrimitives.WriteUInt64LittleEndian(entry, (ulong.MaxValue & ~7UL) | PayloadFullyPresent);
        ImageBytes.Patch(path, Bat, entry);
        AssertCorrupt(path, "payload block 0");
        BinaryPrimitives.WriteUInt64LittleEndian(entry, (3UL << 20) | PayloadFullyPresent); // onto the BAT itself
        ImageBytes.Patch(path, Bat, entry);
        AssertCorrupt(path, "overlaps the BAT");
    }

    [Fact]
    public void Absurd_virtual_size_and_block_size()
    {
        using var temp = new TempFolder();
        string path = MakeDynamic(temp);
        var value = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(value, 1UL << 60);
        ImageBytes.Patch(path, Items + 8, value);
        AssertCorrupt(path, "virtual disk size");
        BinaryPrimitives.WriteUInt64LittleEndian(value, 1UL << 40); // legal, but the BAT region is too small for it
        ImageBytes.Patch(path, Items + 8, value);
        AssertCorrupt(path, "BAT region");

        string other = MakeDynamic(temp, "other.vhdx");
        ImageBytes.Patch(other, Items, BitConverter.GetBytes(3 * MiB));
        AssertCorrupt(other, "block size");
        ImageBytes.Patch(other, Items, BitConverter.GetBytes(512 * MiB));
        AssertCorrupt(other, "block size");
    }

    [Fact]
    public void Parent_is_itself()
    {
        using var temp = new TempFolder();
        string parent = MakeDynamic(temp, "p.vhdx");
        string child = MakeChild(temp, parent, "c.vhdx");
        File.Move(child, parent, overwrite: true);   // p.vhdx now names itself as parent
        AssertCorrupt(parent, "loops");
    }

    [Fact]
    public void Parent_cycle()
    {
        using var temp = new TempFolder();
        string a = MakeDynamic(temp, "a.vhdx");
        string b = MakeChild(temp, a, "b.vhdx");
        string c = MakeChild(temp, b, "c.vhdx");
        File.Copy(c, a, overwrite: true);             // c -> b -> a -> b
        var error = Assert.Throws<CorruptImageException>(() => VhdxImage.Open(c).Dispose());
        Assert.Contains("loops back to " + b, error.Message);
        Assert.Equal(a, error.ImagePath);             // the disk whose parent closes the loop
    }

    [Fact]
    public void Missing_parent_names_the_child()
    {
        using var temp = new TempFolder();
        string parent = MakeDynamic(temp, "p.vhdx");
        string child = MakeChild(temp, parent, "c.vhdx");
        File.Delete(parent);
        var error = Assert.Throws<FileNotFoundException>(() => VhdxImage.Open(child).Dispose());
        Assert.Contains(child, error.Message);
        Assert.Contains("p.vhdx", error.Message);
    }

    [Fact]
    public void Parent_changed()
    {
        using var temp = new TempFolder();
        string parent = MakeDynamic(temp, "p.vhdx");
        string child = MakeChild(temp, parent, "c.vhdx");
        ImageBytes.RewriteHeaders(parent, h => h.DataWriteGuid = Guid.NewGuid());
        AssertCorrupt(child, "parent changed");
    }

    [Fact]
    public void Partially_present_block_without_bitmap()
    {
        using var temp = new TempFolder();
        string parent = MakeDynamic(temp, "p.vhdx");
        string child = MakeChild(temp, parent, "c.vhdx");
        // 3 MiB disk, 1 MiB blocks, chunk ratio 4096: the bitmap entry is BAT index 4096.
        ImageBytes.Patch(child, Bat + 4096 * 8, new byte[8]);
        AssertCorrupt(child, "sector bitmap block is not");
    }

    /// <summary>
    /// Deterministic fuzzing of the structures the reader parses; half the time the checksums are fixed so that
    /// the semantic checks behind them are reached. Only corrupt-image errors or successful reads are allowed.
    /// </summary>
    [Fact]
    public async Task Fuzzed_structures_fail_cleanly()
    {
        using var temp = new TempFolder();
        string dynamic = MakeDynamic(temp, "fuzz.vhdx");
        LogEntryBuilder.AddPendingLog(dynamic);
        using (VhdxImage check = VhdxImage.Open(dynamic)) Assert.Equal(0xA5, ImageBytes.ReadAll(check)[8192]);
        string parent = MakeDynamic(temp, "fuzz-parent.vhdx");
        string child = MakeChild(temp, parent, "fuzz-child.vhdx");

        var ranges = new (long Offset, int Length)[]
        {
            (Header1Offset, 80), (Header2Offset, 80), (RegionTable1Offset, 80), (RegionTable2Offset, 80),
            (Metadata, 32 + 6 * 32), (Items, 400), (Bat, 64), (Bat + 4096 * 8, 8), (MiB, 3 * 4096),
        };
        Task run = Task.Run(() =>
        {
            Fuzz(dynamic, ranges, seed: 1, iterations: 1000, allowMissingParent: false);
            Fuzz(child, ranges, seed: 2, iterations: 1000, allowMissingParent: true);
        });
        Task first = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60)));
        Assert.True(first == run, "fuzzing hung");
        await run;
    }

    private static void Fuzz(string path, (long Offset, int Length)[] ranges, int seed, int iterations, bool allowMissingParent)
    {
        var random = new Random(seed);
        byte[] original = File.ReadAllBytes(path);
        int opened = 0;
        for (int iteration = 0; iteration < iterations; iteration++)
        {
            var touched = new List<(long Offset, int Length)>();
            using (var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                for (int m = random.Next(1, 5); m > 0; m--)
                {
                    var (start, length) = ranges[random.Next(ranges.Length)];
                    long at = start + random.Next(length);
                    var value = new byte[random.Next(1, 9)];
                    switch (random.Next(3))
                    {
                        case 0: random.NextBytes(value); break;
                        case 1: value = new[] { (byte)(original[at] ^ (1 << random.Next(8))) }; break;
                        default: Array.Fill(value, (byte)0xFF); break;
                    }
                    stream.Position = at;
                    stream.Write(value);
                    touched.Add((at, value.Length));
                }
                if (random.Next(2) == 0) FixChecksums(stream);
            }

            try
            {
                using VhdxImage image = VhdxImage.Open(path);
                image.GetDataExtents(0, image.VirtualSize).ToList();
                var buffer = new byte[Math.Min(image.VirtualSize, 4 * MiB)];
                image.Read(0, buffer, 0, buffer.Length);
                opened++;
            }
            catch (CorruptImageException) { }
            catch (InvalidDataException) { }
            catch (FileNotFoundException) when (allowMissingParent) { }

            using (var stream = new FileStream(path, FileMode.Open, FileAccess.Write))
            {
                // Undo the mutations, and the checksum fixes that rewrote the headers and region tables.
                var restore = touched.Select(t => (t.Offset, t.Length)).Concat(new[]
                {
                    (Header1Offset, HeaderSize), (Header2Offset, HeaderSize),
                    (RegionTable1Offset, RegionTableSize), (RegionTable2Offset, RegionTableSize),
                });
                foreach (var (offset, length) in restore)
                {
                    stream.Position = offset;
                    stream.Write(original, (int)offset, length);
                }
            }
        }
        Assert.True(opened > 0, "no mutation left the image readable: the fuzz only tests the first check");
    }

    private static void FixChecksums(FileStream stream)
    {
        foreach (long at in new[] { Header1Offset, Header2Offset, RegionTable1Offset, RegionTable2Offset })
        {
            bool header = at is Header1Offset or Header2Offset;
            int size = header ? HeaderSize : RegionTableSize;
            int field = header ? HeaderChecksumField : RegionChecksumField;
            var bytes = new byte[size];
            stream.Position = at;
            stream.ReadExactly(bytes);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(field), Crc32C.ComputeWithZeroedField(bytes, 0, size, field));
            stream.Position = at;
            stream.Write(bytes);
        }
    }
}
