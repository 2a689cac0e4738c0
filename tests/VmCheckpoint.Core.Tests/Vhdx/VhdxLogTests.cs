using System.Buffers.Binary;
using System.Security.Cryptography;
using Xunit;
using VmCheckpoint.Core.Disks.Vhdx;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Tests.Vhdx;

/// <summary>Builds log entries by the MS-VHDX layout, independently of the reader's parser.</summary>
internal static class LogEntryBuilder
{
    public static byte[] Build(Guid logGuid, ulong sequence, uint tail, long flushed, long last,
        IReadOnlyList<(long FileOffset, byte[]? Data, long ZeroLength)> descriptors)
    {
        int dataSectors = descriptors.Count(d => d.Data != null);
        int descriptorSectors = (64 + descriptors.Count * 32 + 4095) / 4096;
        var entry = new byte[(descriptorSectors + dataSectors) * 4096];
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(0), LogEntrySignature);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(8), (uint)entry.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(12), tail);
        BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(16), sequence);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(24), (uint)descriptors.Count);
        logGuid.ToByteArray().CopyTo(entry, 32);
        BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(48), (ulong)flushed);
        BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(56), (ulong)last);
        int sector = descriptorSectors;
        for (int i = 0; i < descriptors.Count; i++)
        {
            int d = 64 + i * 32;
            var (fileOffset, data, zeroLength) = descriptors[i];
            BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(d + 16), (ulong)fileOffset);
            BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(d + 24), sequence);
            if (data == null)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(d), LogZeroDescriptorSignature);
                BinaryPrimitives.WriteUInt64LittleEndian(entry.AsSpan(d + 8), (ulong)zeroLength);
                continue;
            }
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(d), LogDataDescriptorSignature);
            Buffer.BlockCopy(data, 4092, entry, d + 4, 4);  // trailing bytes
            Buffer.BlockCopy(data, 0, entry, d + 8, 8);     // leading bytes
            int s = sector++ * 4096;
            Buffer.BlockCopy(data, 8, entry, s + 8, 4084);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(s), LogDataSectorSignature);
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(s + 4), (uint)(sequence >> 32));
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(s + 4092), (uint)sequence);
        }
        uint crc = Crc32C.Compute(entry, 0, entry.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(4), crc);
        return entry;
    }

    /// <summary>
    /// Gives a qemu-made dynamic VHDX (1 MiB blocks, block 0 allocated) a pending log of two entries that change
    /// payload data, zero part of it, and allocate block 5 past the current end of the file through the BAT.
    /// </summary>
    public static void AddPendingLog(string image)
    {
        long batOffset, block0;
        long fileLength = new FileInfo(image).Length;
        VhdxHeader header;
        using (VhdxImage vhdx = VhdxImage.Open(image))
        {
            header = vhdx.Header;
            byte[] table = ImageBytes.ReadAt(image, RegionTable1Offset, 64 * 1024);
            batOffset = 0;
            for (int i = 0; i < 2; i++)
                if (new Guid(table.AsSpan(16 + i * 32, 16)) == BatRegion)
                    batOffset = BinaryPrimitives.ReadInt64LittleEndian(table.AsSpan(16 + i * 32 + 16));
            block0 = (long)(BinaryPrimitives.ReadUInt64LittleEndian(ImageBytes.ReadAt(image, batOffset, 8)) >> 20) * MiB;
        }
        long newBlock = (fileLength + MiB - 1) / MiB * MiB;
        byte[] batSector = ImageBytes.ReadAt(image, batOffset, 4096);
        BinaryPrimitives.WriteUInt64LittleEndian(batSector.AsSpan(5 * 8), (ulong)(newBlock / MiB) << 20 | PayloadFullyPresent);
        var guid = Guid.NewGuid();
        byte[] a5 = Enumerable.Repeat((byte)0xA5, 4096).ToArray();
        byte[] pattern = Enumerable.Range(0, 4096).Select(i => (byte)(i * 7 + 1)).ToArray();
        byte[] first = Build(guid, 41, 0, fileLength, fileLength, new (long, byte[]?, long)[]
        {
            (block0 + 8192, a5, 0),
            (block0 + 16384, null, 8192),
        });
        byte[] second = Build(guid, 42, 0, fileLength, newBlock + MiB, new (long, byte[]?, long)[]
        {
            (batOffset, batSector, 0),
            (newBlock + 4096, pattern, 0),
            (block0 + 8192 + 4096, pattern, 0),
        });
        // qemu's replay does not grow the file to LastFileOffset, so grow it (sparsely) here for the oracle.
        using (var stream = new FileStream(image, FileMode.Open)) stream.SetLength(newBlock + MiB);
        ImageBytes.Patch(image, header.LogOffset, first);
        ImageBytes.Patch(image, header.LogOffset + first.Length, second);
        ImageBytes.RewriteHeaders(image, h => h.LogGuid = guid);
    }
}

public sealed class VhdxLogTests
{
    [Fact]
    public void Pending_log_is_replayed_in_memory_as_qemu_replays_it()
    {
        using var temp = new TempFolder();
        string image = temp.File("log.vhdx");
        Tool.Run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", image, (8 * MiB).ToString());
        Tool.QemuIo(image, $"write -P 0x11 0 {MiB}");
        Tool.QemuIo(image, $"write -P 0x22 {3 * MiB} 4096");
        LogEntryBuilder.AddPendingLog(image);
        byte[] before = SHA256.HashData(File.ReadAllBytes(image));

        byte[] ours;
        using (VhdxImage vhdx = VhdxImage.Open(image))
        {
            ours = ImageBytes.ReadAll(vhdx);
            ImageBytes.AssertExtentsCover(vhdx, ours);
        }
        Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(image)));   // never written
        Assert.Equal(0xA5, ours[8192]);
        Assert.Equal(0, ours[16384]);
        Assert.Equal(1, ours[5 * MiB + 4096]);                               // block allocated by the log

        // qemu refuses to open a disk with a pending log read-only; 'check -r all' replays it in a copy.
        string replayed = temp.File("replayed.vhdx");
        File.Copy(image, replayed);
        Tool.Run("qemu-img", "check", "-q", "-r", "all", "-f", "vhdx", replayed);
        string raw = temp.File("ours.raw");
        File.WriteAllBytes(raw, ours);
        Tool.Run("qemu-img", "compare", "-q", "-f", "raw", "-F", "vhdx", raw, replayed);
    }

    [Fact]
    public void Log_guid_without_valid_entries_means_nothing_to_replay()
    {
        using var temp = new TempFolder();
        string image = temp.File("empty-log.vhdx");
        Tool.Run("qemu-img", "create", "-q", "-f", "vhdx", "-o", "block_size=1M", image, (4 * MiB).ToString());
        Tool.QemuIo(image, "write -P 0x11 0 4096");
        ImageBytes.RewriteHeaders(image, h => h.LogGuid = Guid.NewGuid());
        using VhdxImage vhdx = VhdxImage.Open(image);
        Assert.Equal(0x11, ImageBytes.ReadAll(vhdx)[4095]);
    }
}
