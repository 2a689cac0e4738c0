using System.Buffers.Binary;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>
/// Persistent dirty bitmaps made by qemu-img and filled by qemu-io's writes, read by Qcow2Bitmaps: the ranges must be
/// exactly the writes, rounded to the bitmap's granularity, and a bitmap that cannot be trusted must say so.
/// </summary>
public sealed class Qcow2BitmapTests
{
    private const long KiB = 1024, MiB = 1024 * KiB;

    private static string Make(TempFolder temp, string clusterSize = "64k", string size = "64M", string? granularity = null)
    {
        string path = temp.File("d.qcow2");
        Qemu.CreateQcow2(path, $"cluster_size={clusterSize}", size);
        // Data written before the bitmap is not a change.
        Qemu.Io(path, "qcow2", "write -P 0x21 0 4M", "write -P 0x22 20M 1M");
        var args = new List<string> { "bitmap", "--add", "-f", "qcow2" };
        if (granularity != null) { args.Add("-g"); args.Add(granularity); }
        args.Add(path);
        args.Add("b1");
        Qemu.Img(args.ToArray());
        return path;
    }

    private static List<DiskExtent>? Changes(string path, string name, long alignment, out string reason)
    {
        using var image = (Qcow2Image)DiskImage.Open(path);
        return image.GetChangesSince(name, alignment, out reason);
    }

    [Theory]
    [InlineData("64k", null, 64 * KiB)]
    [InlineData("512", "4096", 4 * KiB)]       // 512-byte clusters: the bitmap's data spans several table entries
    [InlineData("2M", "1M", 1 * MiB)]
    public void RangesAreExactlyTheWritesSinceTheBitmapRoundedToItsGranularity(string clusterSize, string? granularity, long g)
    {
        using var temp = new TempFolder();
        string path = Make(temp, clusterSize, granularity: granularity);
        Qemu.Io(path, "qcow2", "write -P 0x31 1048676 50", "write -P 0x32 10M 1M", "write -P 0x33 67108352 512", "write -z 30M 64k");

        var changes = Changes(path, "b1", g, out string reason);

        Assert.True(changes != null, reason);
        long Down(long x) => x / g * g;
        long Up(long x) => (x + g - 1) / g * g;
        var expected = new List<DiskExtent>
        {
            new(Down(1048676), Up(1048676 + 50) - Down(1048676)),
            new(10 * MiB, MiB),
            new(30 * MiB, Up(30 * MiB + 64 * KiB) - 30 * MiB),
            new(Down(67108352), 64 * MiB - Down(67108352)),
        };
        Assert.Equal(expected, changes);
    }

    [Fact]
    public void RangesAreWidenedToTheRequestedAlignmentAndMerged()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        Qemu.Io(path, "qcow2", "write 100k 4k", "write 900k 4k", "write 1200k 4k", "write 5M 4k");

        var changes = Changes(path, "b1", MiB, out string reason);

        Assert.True(changes != null, reason);
        Assert.Equal(new[] { new DiskExtent(0, 2 * MiB), new DiskExtent(5 * MiB, MiB) }, changes);
    }

    [Fact]
    public void AFreshBitmapHasNoChanges()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        var changes = Changes(path, "b1", MiB, out string reason);
        Assert.True(changes != null, reason);
        Assert.Empty(changes!);
    }

    [Fact]
    public void AnOddVirtualSizeEndsItsLastRangeAtTheDisksEnd()
    {
        using var temp = new TempFolder();
        string path = Make(temp, size: "65537k");
        Qemu.Io(path, "qcow2", "write 67108864 1k");
        var changes = Changes(path, "b1", MiB, out string reason);
        Assert.True(changes != null, reason);
        Assert.Equal(new[] { new DiskExtent(64 * MiB, KiB) }, changes);
    }

    [Fact]
    public void ABitmapThatIsGoneOrDisabledIsNotTrusted()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        Assert.Null(Changes(path, "other", MiB, out string reason));
        Assert.Contains("gone", reason);

        Qemu.Img("bitmap", "--disable", "-f", "qcow2", path, "b1");
        Assert.Null(Changes(path, "b1", MiB, out reason));
        Assert.Contains("disabled", reason);

        Qemu.Img("bitmap", "--remove", "-f", "qcow2", path, "b1");
        Assert.Null(Changes(path, "b1", MiB, out reason));
        Assert.Contains("gone", reason);
    }

    [Fact]
    public void ABitmapLeftInUseByACrashIsNotTrusted()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        long entry = DirectoryOffset(path);
        uint flags = HeaderPatch.GetUInt32(path, entry + Qcow2Format.BitmapEntryFlags);
        HeaderPatch.SetUInt32(path, entry + Qcow2Format.BitmapEntryFlags, flags | Qcow2Format.BitmapFlagInUse);

        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("in use", reason);
        // qemu agrees that the bitmap is inconsistent.
        Assert.Contains("in-use", Qemu.Ok("qemu-img", "info", "-U", path));
    }

    [Fact]
    public void BitmapsClearedByAWriterThatDoesNotKnowThemAreNotTrusted()
    {
        // A writer that does not know the bitmaps extension clears autoclear bit 0 when it opens the image for writing.
        using var temp = new TempFolder();
        string path = Make(temp);
        ulong autoclear = HeaderPatch.GetUInt64(path, Qcow2Format.AutoclearFeaturesOffset);
        Assert.Equal(Qcow2Format.AutoclearBitmaps, autoclear & Qcow2Format.AutoclearBitmaps);
        HeaderPatch.SetUInt64(path, Qcow2Format.AutoclearFeaturesOffset, autoclear & ~Qcow2Format.AutoclearBitmaps);

        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("autoclear", reason);
    }

    [Fact]
    public void AnImageWithABackingFileOrOfVersion2HasNoTrustedChanges()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        string top = temp.File("top.qcow2");
        Qemu.CreateQcow2(top, "", "64M", path, "qcow2");
        Qemu.Img("bitmap", "--add", "-f", "qcow2", top, "b1");
        Assert.Null(Changes(top, "b1", MiB, out string reason));
        Assert.Contains("backing", reason);

        string v2 = temp.File("v2.qcow2");
        Qemu.CreateQcow2(v2, "compat=0.10", "64M");
        Assert.Null(Changes(v2, "b1", MiB, out reason));
        Assert.Contains("version 2", reason);
    }

    public static TheoryData<string, int, ulong, int> HostileFields => new()
    {
        // field, width (bytes, or 0 for the header's directory offset), value, offset within the entry
        { "table offset past the end", 8, 1UL << 40, Qcow2Format.BitmapEntryTableOffset },
        { "table offset unaligned", 8, 4096 + 8, Qcow2Format.BitmapEntryTableOffset },
        { "table size too small", 4, 0, Qcow2Format.BitmapEntryTableSize },
        { "table size huge", 4, 0xffffffff, Qcow2Format.BitmapEntryTableSize },
        { "granularity bits 63", 1, 63, Qcow2Format.BitmapEntryGranularityBits },
        { "granularity bits 0", 1, 0, Qcow2Format.BitmapEntryGranularityBits },
        { "name size 0", 2, 0, Qcow2Format.BitmapEntryNameSize },
        { "name size past the directory", 2, 1023, Qcow2Format.BitmapEntryNameSize },
        { "extra data past the directory", 4, 0x7fffffff, Qcow2Format.BitmapEntryExtraDataSize },
    };

    [Theory]
    [MemberData(nameof(HostileFields))]
    public void ADamagedBitmapDirectoryMakesChangesUnknownButTheImageReadable(string what, int width, ulong value, int field)
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        string before = temp.File("before.qcow2");
        File.Copy(path, before);
        long at = DirectoryOffset(path) + field;
        switch (width)
        {
            case 1: HeaderPatch.SetBytes(path, at, new[] { (byte)value }); break;
            case 2: HeaderPatch.SetBytes(path, at, new[] { (byte)(value >> 8), (byte)value }); break;
            case 4: HeaderPatch.SetUInt32(path, at, (uint)value); break;
            default: HeaderPatch.SetUInt64(path, at, value); break;
        }

        Assert.True(Changes(path, "b1", MiB, out string reason) == null, what);
        Assert.Contains("damaged", reason);
        // The guest's data does not depend on the bitmaps: it reads as qemu read it before the damage.
        string dump = temp.File("damaged.raw");
        using (var image = DiskImage.Open(path)) GuestView.Dump(image, dump);
        var r = Qemu.Compare(dump, "raw", before, "qcow2");
        Assert.True(r.ExitCode == 0, $"qemu-img compare: {r.Stdout} {r.Stderr}");
    }

    [Fact]
    public void ABitmapDataClusterPastTheEndOfTheFileIsDamage()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        Qemu.Io(path, "qcow2", "write 10M 1M");
        long table = (long)HeaderPatch.GetUInt64(path, DirectoryOffset(path) + Qcow2Format.BitmapEntryTableOffset);
        HeaderPatch.SetUInt64(path, table, 1UL << 40);
        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("damaged", reason);
    }

    [Fact]
    public void ABitmapDataClusterCutShortByTheEndOfTheFileIsDamage()
    {
        // The lost bytes would read as "not written": the one answer that must never be wrong.
        using var temp = new TempFolder();
        string path = Make(temp);
        Qemu.Io(path, "qcow2", "write 10M 1M");
        long table = (long)HeaderPatch.GetUInt64(path, DirectoryOffset(path) + Qcow2Format.BitmapEntryTableOffset);
        long length = new FileInfo(path).Length;
        long last = (length - 1) / 65536 * 65536;
        HeaderPatch.SetUInt64(path, table, (ulong)last);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(last + 32768);
        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("damaged", reason);
    }

    [Fact]
    public void ATableNamingOneDataClusterTwiceIsDamage()
    {
        using var temp = new TempFolder();
        string path = Make(temp, clusterSize: "512", granularity: "4096");   // four data clusters
        Qemu.Io(path, "qcow2", "write 0 64M");
        long table = (long)HeaderPatch.GetUInt64(path, DirectoryOffset(path) + Qcow2Format.BitmapEntryTableOffset);
        HeaderPatch.SetUInt64(path, table + 8, HeaderPatch.GetUInt64(path, table));
        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("twice", reason);
    }

    [Fact]
    public void ReservedFlagBitsAreDamage()
    {
        using var temp = new TempFolder();
        string path = Make(temp);
        long entry = DirectoryOffset(path);
        HeaderPatch.SetUInt32(path, entry + Qcow2Format.BitmapEntryFlags, HeaderPatch.GetUInt32(path, entry + Qcow2Format.BitmapEntryFlags) | 0x100);
        Assert.Null(Changes(path, "b1", MiB, out string reason));
        Assert.Contains("reserved", reason);
    }

    [Fact]
    public void FlippedBytesInTheBitmapMetadataNeverEscapeAsAnythingButUnknownChanges()
    {
        using var temp = new TempFolder();
        string clean = Make(temp);
        Qemu.Io(clean, "qcow2", "write 10M 1M");
        long directory = DirectoryOffset(clean);
        long table = (long)HeaderPatch.GetUInt64(clean, directory + Qcow2Format.BitmapEntryTableOffset);
        byte[] original = File.ReadAllBytes(clean);
        var random = new Random(12345);
        string path = temp.File("fuzzed.qcow2");
        for (int round = 0; round < 300; round++)
        {
            byte[] bytes = (byte[])original.Clone();
            int flips = 1 + random.Next(4);
            for (int i = 0; i < flips; i++)
            {
                long region = random.Next(3) switch { 0 => directory, 1 => table, _ => HeaderExtensionOffset(original) };
                long at = region + random.Next(32);
                bytes[at] ^= (byte)(1 << random.Next(8));
            }
            File.WriteAllBytes(path, bytes);
            IDiskImage image;
            try
            {
                image = DiskImage.Open(path);
            }
            catch (CorruptImageException)
            {
                continue; // the header itself is refused: fine
            }
            using (image)
            {
                var changes = ((Qcow2Image)image).GetChangesSince("b1", MiB, out _);
                if (changes == null) continue;
                foreach (var c in changes)
                {
                    Assert.InRange(c.Offset, 0, image.VirtualSize - 1);
                    Assert.InRange(c.End, c.Offset + 1, image.VirtualSize);
                }
            }
        }
    }

    /// <summary>File offset of the first bitmap directory entry (from the bitmaps header extension).</summary>
    private static long DirectoryOffset(string path)
    {
        byte[] head = new byte[4096];
        using (var f = File.OpenRead(path)) f.ReadExactly(head);
        long ext = HeaderExtensionOffset(head);
        return (long)BinaryPrimitives.ReadUInt64BigEndian(head.AsSpan((int)ext + 8 + 16));
    }

    /// <summary>Offset of the bitmaps header extension (its type field).</summary>
    private static long HeaderExtensionOffset(byte[] head)
    {
        int pos = (int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(Qcow2Format.HeaderLengthOffset));
        while (pos + 8 <= 4096)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos + 4));
            if (type == Qcow2Format.ExtensionBitmaps) return pos;
            if (type == 0) break;
            pos += 8 + (int)((length + 7) / 8 * 8);
        }
        throw new InvalidOperationException("no bitmaps extension");
    }
}
