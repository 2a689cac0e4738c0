using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Text;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>A bitmap that marks too many separate ranges to be worth following: read the whole disk instead.</summary>
    internal sealed class TooManyChangesException : Exception
    {
        public TooManyChangesException(string message) : base(message) { }
    }

    /// <summary>One entry of a qcow2 image's bitmap directory: a persistent bitmap and where its table is.</summary>
    internal sealed class Qcow2Bitmap
    {
        public Qcow2Bitmap(string name, uint flags, byte type, int granularityBits, long tableOffset, int tableSize, int extraDataSize)
        {
            Name = name;
            Flags = flags;
            Type = type;
            GranularityBits = granularityBits;
            TableOffset = tableOffset;
            TableSize = tableSize;
            ExtraDataSize = extraDataSize;
        }

        public string Name { get; }
        public uint Flags { get; }
        public byte Type { get; }
        public int GranularityBits { get; }
        public long Granularity => 1L << GranularityBits;
        public long TableOffset { get; }
        public int TableSize { get; }
        public int ExtraDataSize { get; }

        /// <summary>The writer did not save the bitmap when it stopped (a crash): its content may miss writes.</summary>
        public bool InUse => (Flags & BitmapFlagInUse) != 0;
        /// <summary>Enabled: every writer that knows bitmaps records its writes in it.</summary>
        public bool Auto => (Flags & BitmapFlagAuto) != 0;
    }

    /// <summary>
    /// Reads the persistent dirty bitmaps of a qcow2 image (qemu docs/interop/qcow2.txt, "Bitmaps"): the directory,
    /// each bitmap's one-level table, and the set bits as guest ranges. Every field is checked as it is read; a bad one
    /// throws <see cref="CorruptImageException"/> naming it, and callers then treat change tracking as unavailable.
    /// </summary>
    internal static class Qcow2Bitmaps
    {
        /// <summary>Bitmap table entries read at a time: tables may be large (one entry per cluster of bitmap data).</summary>
        private const int TableChunkEntries = 4096;
        /// <summary>Flag bits the spec defines; the rest must be zero.</summary>
        private const uint KnownFlags = BitmapFlagInUse | BitmapFlagAuto | BitmapFlagExtraDataCompatible;
        /// <summary>More separate changed ranges than this are not worth tracking one by one: the caller reads everything.</summary>
        public const int MaxExtents = 1 << 20;

        public static IReadOnlyList<Qcow2Bitmap> ReadDirectory(string path, Stream file, Qcow2Header header)
        {
            var bitmaps = new List<Qcow2Bitmap>();
            if (!header.HasBitmapsExtension) return bitmaps;
            long fileLength = file.Length;
            int count = header.BitmapCount;
            long size = header.BitmapDirectorySize;
            long offset = header.BitmapDirectoryOffset;
            if (count < 1 || count > MaxBitmaps)
                throw Corrupt(path, $"nb_bitmaps {header.BitmapCount} is outside 1..{MaxBitmaps}");
            if (size < BitmapEntryFixedLength || size > MaxBitmapDirectoryBytes)
                throw Corrupt(path, $"bitmap_directory_size {size} is outside {BitmapEntryFixedLength}..{MaxBitmapDirectoryBytes}");
            if (offset % header.ClusterSize != 0 || offset == 0 || offset > fileLength || fileLength - offset < size)
                throw Corrupt(path, $"bitmap directory at {offset} ({size} bytes) is not a cluster-aligned range of the file ({fileLength} bytes)");

            var directory = new byte[size];
            file.Position = offset;
            if (StreamIO.ReadAtMost(file, directory, 0, directory.Length) != directory.Length)
                throw Corrupt(path, "file ends inside the bitmap directory");

            var names = new HashSet<string>(StringComparer.Ordinal);
            int pos = 0;
            for (int i = 0; i < count; i++)
            {
                if (directory.Length - pos < BitmapEntryFixedLength)
                    throw Corrupt(path, $"bitmap directory ends inside entry {i} of {count}");
                var e = directory.AsSpan(pos);
                ulong tableOffset = BinaryPrimitives.ReadUInt64BigEndian(e.Slice(BitmapEntryTableOffset));
                uint tableSize = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(BitmapEntryTableSize));
                uint flags = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(BitmapEntryFlags));
                byte type = e[BitmapEntryType];
                int granularityBits = e[BitmapEntryGranularityBits];
                int nameSize = BinaryPrimitives.ReadUInt16BigEndian(e.Slice(BitmapEntryNameSize));
                uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(BitmapEntryExtraDataSize));
                if ((flags & ~KnownFlags) != 0)
                    throw Corrupt(path, $"bitmap {i} has reserved flag bits set (0x{flags:x8})");
                if (nameSize < 1 || nameSize > MaxBitmapNameLength)
                    throw Corrupt(path, $"bitmap {i} has name_size {nameSize} (1..{MaxBitmapNameLength})");
                if (extraSize > size)
                    throw Corrupt(path, $"bitmap {i} has extra_data_size {extraSize}, larger than its directory");
                long entryLength = BitmapEntryFixedLength + (long)extraSize + nameSize;
                long padded = (entryLength + ExtensionAlignment - 1) / ExtensionAlignment * ExtensionAlignment;
                if (padded > directory.Length - pos)
                    throw Corrupt(path, $"bitmap {i} ({padded} bytes) runs past the end of the bitmap directory");
                string name = DecodeName(path, directory, pos + BitmapEntryFixedLength + (int)extraSize, nameSize, i);
                for (long p = pos + entryLength; p < pos + padded; p++)
                {
                    if (directory[p] != 0) throw Corrupt(path, $"bitmap {i}'s directory entry has non-zero padding");
                }
                if (!names.Add(name))
                    throw Corrupt(path, $"bitmap name '{name}' appears twice");
                if (granularityBits < MinBitmapGranularityBits || granularityBits > MaxBitmapGranularityBits)
                    throw Corrupt(path, $"bitmap '{name}' has granularity_bits {granularityBits} ({MinBitmapGranularityBits}..{MaxBitmapGranularityBits})");
                if (tableOffset % (ulong)header.ClusterSize != 0 || tableOffset > (ulong)fileLength || (ulong)fileLength - tableOffset < (ulong)tableSize * 8)
                    throw Corrupt(path, $"bitmap '{name}' has its table at {tableOffset} ({tableSize} entries), not a cluster-aligned range of the file");
                long expected = ExpectedTableSize(header.Size, granularityBits, header.ClusterSize);
                if (tableSize != expected)
                    throw Corrupt(path, $"bitmap '{name}' has {tableSize} table entries; a disk of {header.Size} bytes at granularity {1L << granularityBits} needs {expected}");
                bitmaps.Add(new Qcow2Bitmap(name, flags, type, granularityBits, (long)tableOffset, (int)tableSize, (int)extraSize));
                pos += (int)padded;
            }

            if (pos != directory.Length)
                throw Corrupt(path, $"bitmap directory is {directory.Length} bytes but its {count} entries take {pos}");
            return bitmaps;
        }

        /// <summary>
        /// The guest ranges whose bits are set, each widened to whole units of <paramref name="alignment"/> (a power of
        /// two) and merged: at most one extent per unit, however the bits are scattered.
        /// </summary>
        public static List<DiskExtent> ReadDirtyExtents(string path, Stream file, Qcow2Header header, Qcow2Bitmap bitmap, long alignment)
        {
            if (alignment <= 0 || (alignment & (alignment - 1)) != 0) throw new ArgumentOutOfRangeException(nameof(alignment));
            long virtualSize = header.Size;
            long granularity = bitmap.Granularity;
            int clusterSize = header.ClusterSize;
            long bitsPerCluster = (long)clusterSize * 8;
            long totalBits = (virtualSize + granularity - 1) / granularity;
            long fileLength = file.Length;
            var extents = new List<DiskExtent>();
            long runStart = -1, runEnd = -1;

            void Mark(long firstBit, long bitCount)
            {
                long start = firstBit * granularity;
                long end = Math.Min(virtualSize, (firstBit + bitCount) * granularity);
                start &= ~(alignment - 1);
                end = Math.Min(virtualSize, (end + alignment - 1) & ~(alignment - 1));
                if (runEnd >= start)
                {
                    runEnd = Math.Max(runEnd, end);
                    return;
                }

                if (runStart >= 0) extents.Add(new DiskExtent(runStart, runEnd - runStart));
                if (extents.Count > MaxExtents)
                    throw new TooManyChangesException($"bitmap '{bitmap.Name}' holds more than {MaxExtents} separate changed ranges");
                runStart = start;
                runEnd = end;
            }

            var table = new byte[Math.Min(bitmap.TableSize, TableChunkEntries) * 8];
            byte[]? data = null;
            // Each data cluster is the bitmap's own: one cluster named twice would let a small file describe a huge
            // disk, and say nothing true about it.
            var seen = new HashSet<long>();
            for (int first = 0; first < bitmap.TableSize; first += TableChunkEntries)
            {
                int n = Math.Min(TableChunkEntries, bitmap.TableSize - first);
                file.Position = bitmap.TableOffset + (long)first * 8;
                if (StreamIO.ReadAtMost(file, table, 0, n * 8) != n * 8)
                    throw Corrupt(path, $"file ends inside the table of bitmap '{bitmap.Name}'");
                for (int i = 0; i < n; i++)
                {
                    ulong entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8));
                    long clusterFirstBit = (first + i) * bitsPerCluster;
                    long clusterBits = Math.Min(bitsPerCluster, totalBits - clusterFirstBit);
                    long dataOffset = (long)(entry & OffsetMask);
                    if (dataOffset == 0)
                    {
                        if ((entry & ~BitmapTableAllOnes) != 0)
                            throw Corrupt(path, $"bitmap '{bitmap.Name}' table entry {first + i} has reserved bits set (0x{entry:x16})");
                        if ((entry & BitmapTableAllOnes) != 0) Mark(clusterFirstBit, clusterBits);
                        continue;
                    }

                    if ((entry & (BitmapTableReservedMask | BitmapTableAllOnes)) != 0)
                        throw Corrupt(path, $"bitmap '{bitmap.Name}' table entry {first + i} has reserved bits set (0x{entry:x16})");
                    // qemu writes whole data clusters: one cut short by the end of the file lost bits, and a lost bit
                    // reads as "not written", the one answer that must never be wrong.
                    if (dataOffset % clusterSize != 0 || dataOffset > fileLength - clusterSize)
                        throw Corrupt(path, $"bitmap '{bitmap.Name}' data cluster {first + i} at {dataOffset} is not a whole cluster inside the file");
                    if (dataOffset < bitmap.TableOffset + (long)bitmap.TableSize * 8 && dataOffset + clusterSize > bitmap.TableOffset)
                        throw Corrupt(path, $"bitmap '{bitmap.Name}' data cluster {first + i} overlaps its own table");
                    if (!seen.Add(dataOffset))
                        throw Corrupt(path, $"bitmap '{bitmap.Name}' names data cluster {dataOffset} twice");
                    data ??= new byte[clusterSize];
                    file.Position = dataOffset;
                    if (StreamIO.ReadAtMost(file, data, 0, clusterSize) != clusterSize)
                        throw Corrupt(path, $"file ends inside data cluster {first + i} of bitmap '{bitmap.Name}'");
                    ScanCluster(data, clusterFirstBit, clusterBits, Mark);
                }
            }

            if (runStart >= 0) extents.Add(new DiskExtent(runStart, runEnd - runStart));
            return extents;
        }

        /// <summary>Table entries a bitmap of a disk of <paramref name="virtualSize"/> bytes has: one per cluster of bits.</summary>
        internal static long ExpectedTableSize(long virtualSize, int granularityBits, int clusterSize)
        {
            long bits = (virtualSize + (1L << granularityBits) - 1) >> granularityBits;
            long bytes = (bits + 7) / 8;
            return (bytes + clusterSize - 1) / clusterSize;
        }

        // Bit k of byte j stands for granule 8j + k (least significant bit first); runs of set bits are reported whole.
        private static void ScanCluster(byte[] data, long firstBit, long bitCount, Action<long, long> mark)
        {
            long runFrom = -1;
            for (long b = 0; b < bitCount; b++)
            {
                int byteIndex = (int)(b >> 3);
                if ((b & 7) == 0 && runFrom < 0)
                {
                    // Skip whole zero words quickly: most of a bitmap is clean.
                    while (byteIndex + 8 <= data.Length && (b + 64) <= bitCount && BitConverter.ToUInt64(data, byteIndex) == 0)
                    {
                        b += 64;
                        byteIndex += 8;
                    }

                    if (b >= bitCount) break;
                }

                bool set = (data[byteIndex] & (1 << (int)(b & 7))) != 0;
                if (set && runFrom < 0) runFrom = b;
                else if (!set && runFrom >= 0)
                {
                    mark(firstBit + runFrom, b - runFrom);
                    runFrom = -1;
                }
            }

            if (runFrom >= 0) mark(firstBit + runFrom, bitCount - runFrom);
        }

        private static string DecodeName(string path, byte[] data, int index, int count, int entry)
        {
            try
            {
                return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(data, index, count);
            }
            catch (DecoderFallbackException)
            {
                throw Corrupt(path, $"the name of bitmap {entry} is not valid UTF-8");
            }
        }

        private static CorruptImageException Corrupt(string path, string message) => new CorruptImageException(path, message);
    }
}
