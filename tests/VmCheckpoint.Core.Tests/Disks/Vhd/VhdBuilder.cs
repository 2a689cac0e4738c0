using System.Buffers.Binary;
using System.Text;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>
/// Writes VHD files by hand from the specification ("Virtual Hard Disk Image Format Specification"), independently of
/// the reader under test: fixed, dynamic and differencing disks, with any creator, geometry, block size and sector
/// bitmap, and the parent locators Windows writes. qemu cannot create differencing VHDs, and Hyper-V does not run here.
/// </summary>
internal sealed class VhdBuilder
{
    public const int Fixed = 2, Dynamic = 3, Differencing = 4;
    private const int Sector = 512;

    public VhdBuilder(int type, long size)
    {
        Type = type;
        Size = size;
    }

    public int Type { get; }
    public long Size { get; }
    public int BlockSize { get; set; } = 2 * 1024 * 1024;
    public string Creator { get; set; } = "win ";
    /// <summary>Cylinders, heads, sectors per track; null: the largest geometry, so every reader takes the size from current_size.</summary>
    public (int C, int H, int S)? Geometry { get; set; }
    public Guid UniqueId { get; set; } = Guid.NewGuid();
    public Guid ParentUniqueId { get; set; }
    public string ParentUnicodeName { get; set; } = "";
    /// <summary>Parent locators: platform code ("W2ru", "W2ku", ...) and the path as that platform writes it.</summary>
    public List<(string Code, string Path)> Locators { get; } = new();
    /// <summary>Sectors written, by sector number. In a dynamic disk they also decide which blocks exist.</summary>
    public SortedDictionary<long, byte[]> Sectors { get; } = new();
    /// <summary>Bitmaps with every bit set, as qemu writes them, rather than only the written sectors' bits.</summary>
    public bool FullBitmaps { get; set; }
    /// <summary>Blocks allocated even though nothing is written in them.</summary>
    public HashSet<long> EmptyBlocks { get; } = new();
    /// <summary>Bytes put into a block's data area at a sector whose bitmap bit stays clear (hostile: readers disagree).</summary>
    public Dictionary<long, byte[]> Unmarked { get; } = new();
    public bool TailFooter { get; set; } = true;
    public bool HeadFooter { get; set; } = true;

    /// <summary>Where the BAT and the blocks landed in the last file built (tests damage them).</summary>
    public long BatOffset { get; private set; }
    public Dictionary<long, long> BlockOffsets { get; } = new();
    public long FileLength { get; private set; }

    public void Write(long offset, byte[] data)
    {
        if (offset % Sector != 0 || data.Length % Sector != 0) throw new ArgumentException("whole sectors only");
        for (int i = 0; i < data.Length; i += Sector) Sectors[offset / Sector + i / Sector] = data.AsSpan(i, Sector).ToArray();
    }

    public void Fill(long offset, long length, byte value) => Write(offset, Enumerable.Repeat(value, (int)length).ToArray());

    /// <summary>What the guest sees of this disk alone: written sectors, zeros elsewhere.</summary>
    public byte[] GuestView(byte[]? parent = null)
    {
        var view = parent != null ? parent.ToArray() : new byte[Size];
        foreach (var (sector, data) in Sectors) Buffer.BlockCopy(data, 0, view, (int)(sector * Sector), Sector);
        return view;
    }

    public void Build(string path)
    {
        using var f = new FileStream(path, FileMode.Create, FileAccess.ReadWrite);
        byte[] footer = Footer();
        if (Type == Fixed)
        {
            f.SetLength(Size);
            foreach (var (sector, data) in Sectors) At(f, sector * Sector, data);
            if (TailFooter) At(f, Size, footer);
            FileLength = f.Length;
            return;
        }

        int bitmapBytes = (BlockSize / Sector / 8 + Sector - 1) / Sector * Sector;
        long blocks = (Size + BlockSize - 1) / BlockSize;
        long batBytes = (blocks * 4 + Sector - 1) / Sector * Sector;
        BatOffset = 1536;
        long locatorsAt = BatOffset + batBytes;
        var locatorData = Locators.Select(l => (l.Code, Bytes: l.Code is "W2ru" or "W2ku" ? Encoding.Unicode.GetBytes(l.Path) : Encoding.UTF8.GetBytes(l.Path))).ToList();
        long next = locatorsAt + locatorData.Sum(l => (l.Bytes.Length + Sector - 1) / Sector * Sector);

        var bat = Enumerable.Repeat((byte)0xff, (int)batBytes).ToArray();
        var used = Sectors.Keys.Select(s => s * Sector / BlockSize).Concat(EmptyBlocks).Concat(Unmarked.Keys.Select(s => s * Sector / BlockSize)).Distinct().OrderBy(b => b);
        BlockOffsets.Clear();
        foreach (long block in used)
        {
            BlockOffsets[block] = next;
            BinaryPrimitives.WriteUInt32BigEndian(bat.AsSpan((int)(block * 4)), (uint)(next / Sector));
            var bitmap = new byte[bitmapBytes];
            if (FullBitmaps) Array.Fill(bitmap, (byte)0xff);
            long first = block * BlockSize / Sector;
            foreach (var (sector, data) in Sectors.Where(p => p.Key >= first && p.Key < first + BlockSize / Sector))
            {
                long inBlock = sector - first;
                bitmap[inBlock / 8] |= (byte)(0x80 >> (int)(inBlock % 8));
                At(f, next + bitmapBytes + inBlock * Sector, data);
            }
            foreach (var (sector, data) in Unmarked.Where(p => p.Key >= first && p.Key < first + BlockSize / Sector))
                At(f, next + bitmapBytes + (sector - first) * Sector, data);
            At(f, next, bitmap);
            next += bitmapBytes + BlockSize;
        }

        f.SetLength(next);
        At(f, BatOffset, bat);
        long locatorAt = locatorsAt;
        foreach (var (_, bytes) in locatorData)
        {
            At(f, locatorAt, bytes);
            locatorAt += (bytes.Length + Sector - 1) / Sector * Sector;
        }
        byte[] header = DynamicHeader(locatorsAt, locatorData);
        At(f, 512, header);
        if (HeadFooter) At(f, 0, footer);
        if (TailFooter) At(f, next, footer);
        FileLength = f.Length;
    }

    private byte[] Footer()
    {
        var b = new byte[Sector];
        Encoding.ASCII.GetBytes("conectix").CopyTo(b, 0);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), 0x00010000);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(16), Type == Fixed ? ulong.MaxValue : 512UL);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), 0x2d000000);
        Encoding.Latin1.GetBytes(Creator.PadRight(4, ' ')[..4]).CopyTo(b, 28);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(32), 0x000a0000);
        Encoding.ASCII.GetBytes("Wi2k").CopyTo(b, 36);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(40), (ulong)Size);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(48), (ulong)Size);
        var (c, h, s) = Geometry ?? (65535, 16, 255);
        BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(56), (ushort)c);
        b[58] = (byte)h;
        b[59] = (byte)s;
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(60), (uint)Type);
        GuidBytes(UniqueId).CopyTo(b, 68);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(64), Checksum(b, 64));
        return b;
    }

    private byte[] DynamicHeader(long locatorsAt, List<(string Code, byte[] Bytes)> locators)
    {
        var b = new byte[1024];
        Encoding.ASCII.GetBytes("cxsparse").CopyTo(b, 0);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), ulong.MaxValue);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(16), (ulong)BatOffset);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(24), 0x00010000);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(28), (uint)((Size + BlockSize - 1) / BlockSize));
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(32), (uint)BlockSize);
        if (Type == Differencing)
        {
            GuidBytes(ParentUniqueId).CopyTo(b, 40);
            BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(56), 0x2d000000);
            Encoding.BigEndianUnicode.GetBytes(ParentUnicodeName).CopyTo(b, 64);
            long at = locatorsAt;
            for (int i = 0; i < locators.Count; i++)
            {
                var e = b.AsSpan(576 + i * 24);
                Encoding.ASCII.GetBytes(locators[i].Code).CopyTo(e);
                int space = (locators[i].Bytes.Length + Sector - 1) / Sector * Sector;
                BinaryPrimitives.WriteUInt32BigEndian(e.Slice(4), (uint)space); // bytes, as Windows writes it
                BinaryPrimitives.WriteUInt32BigEndian(e.Slice(8), (uint)locators[i].Bytes.Length);
                BinaryPrimitives.WriteUInt64BigEndian(e.Slice(16), (ulong)at);
                at += space;
            }
        }

        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(36), Checksum(b, 36));
        return b;
    }

    public static uint Checksum(byte[] b, int field)
    {
        uint sum = 0;
        for (int i = 0; i < b.Length; i++)
            if (i < field || i >= field + 4) sum += b[i];
        return ~sum;
    }

    /// <summary>A GUID as the 16 bytes of its RFC 4122 text, in order.</summary>
    public static byte[] GuidBytes(Guid id) => Convert.FromHexString(id.ToString("N"));

    private static void At(FileStream f, long offset, byte[] data)
    {
        f.Position = offset;
        f.Write(data);
    }
}
