using System.Buffers.Binary;
using System.Text;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.Libvirt.SavedState;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Hypervisors;

/// <summary>
/// libvirt save images (QEMU's migration stream behind libvirt's header) decoded into page-addressed memory and
/// rebuilt. The streams are written here record by record as migration/ram.c and savevm.c write them; the live
/// Pester tests resume real guests from rebuilt ones.
/// </summary>
public sealed class SavedStateTests
{
    private const int Page = 4096;

    /// <summary>Writes a save image: a page record is (block, page index, fill byte or null for a zero page).</summary>
    private static byte[] SaveImage(IEnumerable<(string Id, long Length)> blocks, IEnumerable<IEnumerable<(string Block, int Page, byte? Fill)>> parts,
        bool compressedPage = false)
    {
        var s = new MemoryStream();
        void B(byte b) => s.WriteByte(b);
        void U32(uint v) { var x = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(x, v); s.Write(x); }
        void U64(ulong v) { var x = new byte[8]; BinaryPrimitives.WriteUInt64BigEndian(x, v); s.Write(x); }
        void Str(string v) { B((byte)v.Length); s.Write(Encoding.ASCII.GetBytes(v)); }
        var xml = Encoding.UTF8.GetBytes("<domain type='qemu'><name>vm</name></domain>\0\0\0\0");
        var header = new byte[92];
        Encoding.ASCII.GetBytes("LibvirtQemudSave").CopyTo(header, 0);
        BitConverter.GetBytes(2u).CopyTo(header, 16);
        BitConverter.GetBytes((uint)xml.Length).CopyTo(header, 20);
        BitConverter.GetBytes(1u).CopyTo(header, 24);
        s.Write(header);
        s.Write(xml);
        U32(0x5145564D); U32(3);
        B(0x07); U32(13); s.Write(Encoding.ASCII.GetBytes("pc-i440fx-7.2"));
        B(0x01); U32(3); Str("ram"); U32(0); U32(4);
        var list = blocks.ToList();
        U64((ulong)list.Sum(b => b.Length) | 0x04);
        foreach (var b in list) { Str(b.Id); U64((ulong)b.Length); }
        U64(0x10); B(0x7E); U32(3);
        var all = parts.ToList();
        string? last = null; // as QEMU: a CONTINUE record refers to the last block named, in this section or an earlier one
        for (int i = 0; i < all.Count; i++)
        {
            B(i == all.Count - 1 ? (byte)0x03 : (byte)0x02); U32(3);
            foreach (var (block, page, fill) in all[i])
            {
                ulong cont = block == last ? 0x20UL : 0;
                ulong flag = fill is null ? 0x02UL : compressedPage ? 0x100UL : 0x08UL;
                U64((ulong)page * Page | flag | cont);
                if (cont == 0) Str(block);
                last = block;
                if (fill is null) B(0);
                else s.Write(Enumerable.Repeat(fill.Value, Page).ToArray());
            }
            U64(0x10); B(0x7E); U32(3);
        }
        B(0x04); U32(5); Str("timer"); U32(0); U32(2); s.Write(new byte[] { 1, 2, 3, 4, 5, 0x7E, 0, 0, 0, 5 });
        B(0x00);
        B(0x06); U32(4); s.Write(Encoding.ASCII.GetBytes("{}\0\0"));
        return s.ToArray();
    }

    private static readonly (string, long)[] Ram = { ("pc.ram", 3L << 20), ("vga.vram", 64 * 1024) };

    private static IEnumerable<(string, int, byte?)> Everything(byte seed, int changedPage = -1) =>
        Enumerable.Range(0, 768).Select(p => ("pc.ram", p, p == changedPage ? (byte?)0xEE : p % 3 == 0 ? (byte?)null : (byte?)(byte)(p + seed)))
            .Concat(Enumerable.Range(0, 16).Select(p => ("vga.vram", p, (byte?)0x77)));

    private static byte[] ReadAll(IDiskImage image)
    {
        var b = new byte[image.VirtualSize];
        image.Read(0, b, 0, b.Length);
        return b;
    }

    [Fact]
    public void PagesLandAtTheirAddressesWithTheirLastValue()
    {
        using var temp = new TempFolder();
        string path = temp.File("memory.save");
        // Page 5 sent twice (a dirtied page sent again), page 7 sent and then zeroed.
        File.WriteAllBytes(path, SaveImage(Ram, new[] { Everything(1), new[] { ("pc.ram", 5, (byte?)0xAB), ("pc.ram", 7, (byte?)null) } }));

        using var image = PageAddressedMemory.Open(path);
        var all = ReadAll(image);
        long ram = PageAddressedMemory.Align;
        Assert.All(all.Skip((int)(ram + 5 * Page)).Take(Page), b => Assert.Equal(0xAB, b));
        Assert.All(all.Skip((int)(ram + 7 * Page)).Take(Page), b => Assert.Equal(0, b));
        Assert.All(all.Skip((int)(ram + 3 * Page)).Take(Page), b => Assert.Equal(0, b)); // a zero page
        Assert.All(all.Skip((int)(ram + 4 * Page)).Take(Page), b => Assert.Equal(5, b));
        long vram = ram + (3L << 20); // the next block, on its own 1 MiB boundary
        Assert.All(all.Skip((int)vram).Take(16 * Page), b => Assert.Equal(0x77, b));
        // Zero pages are holes: not data.
        Assert.DoesNotContain(image.GetDataExtents(0, image.VirtualSize), e => e.Offset <= ram + 3 * Page && e.End > ram + 3 * Page);
    }

    [Fact]
    public void RebuildsTheStreamLibvirtReads()
    {
        using var temp = new TempFolder();
        string path = temp.File("memory.save");
        var original = SaveImage(Ram, new[] { Everything(1) });
        File.WriteAllBytes(path, original);
        string restored = temp.File("restored.save");
        using (var image = PageAddressedMemory.Open(path))
            File.WriteAllBytes(restored, ReadAll(image));

        Assert.True(SavedStateImage.Rebuild(restored));

        Assert.Equal(original, File.ReadAllBytes(restored));
    }

    [Fact]
    public void APageSentTwiceIsRebuiltWithItsLastValueInBothPlaces()
    {
        using var temp = new TempFolder();
        string path = temp.File("memory.save");
        File.WriteAllBytes(path, SaveImage(Ram, new[] { Everything(1), new[] { ("pc.ram", 5, (byte?)0xAB) } }));
        string restored = temp.File("restored.save");
        using (var image = PageAddressedMemory.Open(path))
            File.WriteAllBytes(restored, ReadAll(image));

        Assert.True(SavedStateImage.Rebuild(restored));

        // The loading side applies records in order: both give the last value, so the guest sees what it had.
        var expected = SaveImage(Ram, new[] { Everything(1).Select(r => r.Item2 == 5 && r.Item1 == "pc.ram" ? (r.Item1, r.Item2, (byte?)0xAB) : r), new[] { ("pc.ram", 5, (byte?)0xAB) } });
        Assert.Equal(expected, File.ReadAllBytes(restored));
    }

    [Fact]
    public void OnePageChangedChangesOneBlockOfTheImage()
    {
        using var temp = new TempFolder();
        string a = temp.File("a.save"), b = temp.File("b.save");
        File.WriteAllBytes(a, SaveImage(Ram, new[] { Everything(1) }));
        // The second stream shifts: a page that was zero before now has data, so every record after it moves.
        File.WriteAllBytes(b, SaveImage(Ram, new[] { Everything(1, changedPage: 3) }));
        using var ia = PageAddressedMemory.Open(a);
        using var ib = PageAddressedMemory.Open(b);
        var ba = ReadAll(ia);
        var bb = ReadAll(ib);
        // Only the skeleton's length differs (a zero page's record carries one byte, a data page's none once taken out).
        var differing = new List<long>();
        long skeleton = PageAddressedMemory.AlignUp(PageAddressedMemory.Align + (3L << 20) + PageAddressedMemory.Align);
        for (long at = 0; at < skeleton; at += PageAddressedMemory.Align)
            if (!ba.AsSpan((int)at, (int)PageAddressedMemory.Align).SequenceEqual(bb.AsSpan((int)at, (int)PageAddressedMemory.Align))) differing.Add(at / PageAddressedMemory.Align);
        // The descriptor (it records the skeleton's length) and the RAM block holding page 3; every other block is equal.
        Assert.Equal(new long[] { 0, 1 }, differing);
    }

    [Fact]
    public void AStreamItCannotDecodeIsStoredAsItIsAndSaysWhy()
    {
        using var temp = new TempFolder();
        string path = temp.File("memory.save");
        var bytes = SaveImage(Ram, new[] { Everything(1) }, compressedPage: true);
        File.WriteAllBytes(path, bytes);

        using var image = SavedStateImage.OpenForCheckpoint(path, out string? note);

        Assert.Contains("compressed", note);
        Assert.Equal(bytes, ReadAll(image));
        Assert.False(SavedStateImage.Rebuild(path)); // not page-addressed: left alone
        Assert.Equal(bytes, File.ReadAllBytes(path));
    }
}
