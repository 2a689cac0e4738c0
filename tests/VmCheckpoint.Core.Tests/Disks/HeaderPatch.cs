using System.Buffers.Binary;
using VmCheckpoint.Core.Disks.Qcow2;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Edits bytes of a qcow2 file in place, to make hostile or unusual images from real ones.</summary>
internal static class HeaderPatch
{
    public static void SetUInt32(string path, long offset, uint value)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, value);
        SetBytes(path, offset, b);
    }

    public static void SetUInt64(string path, long offset, ulong value)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(b, value);
        SetBytes(path, offset, b);
    }

    public static ulong GetUInt64(string path, long offset) => BinaryPrimitives.ReadUInt64BigEndian(GetBytes(path, offset, 8));

    public static uint GetUInt32(string path, long offset) => BinaryPrimitives.ReadUInt32BigEndian(GetBytes(path, offset, 4));

    public static byte[] GetBytes(string path, long offset, int count)
    {
        using var f = File.OpenRead(path);
        var b = new byte[count];
        f.Position = offset;
        f.ReadExactly(b);
        return b;
    }

    public static void SetBytes(string path, long offset, byte[] bytes)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        f.Position = offset;
        f.Write(bytes);
    }

    /// <summary>Changes the type of the first header extension of type <paramref name="from"/>.</summary>
    public static void RenameExtension(string path, uint from, uint to)
    {
        byte[] head = new byte[4096];
        using (var f = File.OpenRead(path)) f.ReadExactly(head);
        int pos = (int)BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(Qcow2Format.HeaderLengthOffset));
        while (pos + 8 <= head.Length)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos));
            uint length = BinaryPrimitives.ReadUInt32BigEndian(head.AsSpan(pos + 4));
            if (type == 0) break;
            if (type == from)
            {
                SetUInt32(path, pos, to);
                return;
            }

            pos += 8 + (int)((length + 7) / 8 * 8);
        }

        throw new InvalidOperationException($"{path} has no header extension 0x{from:x8}");
    }

    /// <summary>File offset of the first L2 table and of L1 (from the header).</summary>
    public static (long L1, long L2) Tables(string path)
    {
        long l1 = (long)GetUInt64(path, Qcow2Format.L1TableOffsetOffset);
        long l2 = (long)(GetUInt64(path, l1) & Qcow2Format.OffsetMask);
        return (l1, l2);
    }
}
