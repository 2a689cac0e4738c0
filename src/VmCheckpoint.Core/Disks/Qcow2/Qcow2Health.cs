using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>
    /// Checks the metadata of a qcow2 image that its guest data does not depend on: the refcount table and its blocks
    /// (which clusters are in use, for writers) and the snapshot table (internal snapshots, not the current disk).
    /// Damage there does not stop a read of the disk: it becomes a warning, so that a backup of a disk that still holds
    /// its data is taken and says what was found. Writing into such an image (a dirty bitmap) is another matter: a
    /// writer trusting broken refcounts could allocate over live data, so <see cref="Qcow2BitmapEditor"/> refuses to.
    /// </summary>
    internal static class Qcow2Health
    {
        public static List<string> Check(string path, Stream file, Qcow2Header header)
        {
            var warnings = new List<string>();
            long fileLength = file.Length;
            if (header.IsMarkedCorrupt)
                warnings.Add($"{path}: qemu marked the image corrupt (incompatible feature bit 1): it found its metadata inconsistent and stopped writing to it. It was read as qemu reads it, read-only; repair it with qemu-img check -r all");
            string? refcounts = CheckRefcounts(file, header, fileLength);
            if (refcounts != null)
                warnings.Add($"{path}: its refcount table is damaged ({refcounts}). The disk's data does not depend on it and was read; qemu-img check -r all repairs it");
            string? snapshots = CheckSnapshots(file, header, fileLength);
            if (snapshots != null)
                warnings.Add($"{path}: its snapshot table is damaged ({snapshots}). The current disk does not depend on it and was read; its internal snapshots were not");
            return warnings;
        }

        private static string? CheckRefcounts(Stream file, Qcow2Header header, long fileLength)
        {
            int clusterSize = header.ClusterSize;
            long offset = header.RefcountTableOffset;
            long clusters = header.RefcountTableClusters;
            if (clusters == 0) return "refcount_table_clusters is 0";
            if (clusters * clusterSize > MaxRefcountTableBytes) return $"refcount_table_clusters {clusters} makes a table larger than {MaxRefcountTableBytes} bytes";
            if (offset % clusterSize != 0) return $"refcount_table_offset {offset} is not aligned to the cluster size {clusterSize}";
            long bytes = clusters * clusterSize;
            if (offset == 0 || offset > fileLength || fileLength - offset < bytes)
                return $"the table at {offset} ({bytes} bytes) lies outside the file ({fileLength} bytes)";

            var table = new byte[bytes];
            file.Position = offset;
            if (StreamIO.ReadAtMost(file, table, 0, table.Length) != table.Length) return "the file ends inside the table";
            int used = 0;
            for (int i = 0; i < table.Length; i += 8)
            {
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i));
                if (entry == 0) continue;
                used++;
                if ((entry & RefcountTableReservedMask) != 0)
                    return $"entry {i / 8} has reserved bits set (0x{entry:x16})";
                ulong block = entry & ~RefcountTableReservedMask;
                if (block % (ulong)clusterSize != 0) return $"entry {i / 8} points at {block}, not aligned to the cluster size";
                if (block > (ulong)fileLength || (ulong)fileLength - block < (ulong)clusterSize)
                    return $"entry {i / 8} points at a refcount block at {block}, past the end of the file ({fileLength} bytes)";
            }

            // Every cluster of an image is counted, the header's included: a table with no block counts nothing.
            return used == 0 ? "it holds no refcount block" : null;
        }

        private static string? CheckSnapshots(Stream file, Qcow2Header header, long fileLength)
        {
            long count = header.SnapshotCount;
            long offset = header.SnapshotsOffset;
            if (count == 0) return null;
            if (header.HasDataFile) return $"nb_snapshots is {count}, yet an image with an external data file cannot have snapshots";
            if (count > MaxSnapshots) return $"nb_snapshots {count} is more than {MaxSnapshots}";
            if (offset % header.ClusterSize != 0) return $"snapshots_offset {offset} is not aligned to the cluster size {header.ClusterSize}";
            if (offset == 0 || offset >= fileLength) return $"the table at {offset} lies outside the file ({fileLength} bytes)";

            long limit = Math.Min(fileLength - offset, MaxSnapshotTableBytes);
            var table = new byte[limit];
            file.Position = offset;
            int got = StreamIO.ReadAtMost(file, table, 0, table.Length);
            long pos = 0;
            for (long i = 0; i < count; i++)
            {
                if (got - pos < SnapshotFixedLength) return $"snapshot {i} of {count} lies past the end of the file or the table's size limit";
                var e = table.AsSpan((int)pos);
                ulong l1Offset = BinaryPrimitives.ReadUInt64BigEndian(e);
                uint l1Size = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(8));
                int idSize = BinaryPrimitives.ReadUInt16BigEndian(e.Slice(12));
                int nameSize = BinaryPrimitives.ReadUInt16BigEndian(e.Slice(14));
                uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(36));
                if (extraSize > MaxSnapshotExtraData) return $"snapshot {i} has {extraSize} bytes of extra data (at most {MaxSnapshotExtraData})";
                long entry = SnapshotFixedLength + extraSize + idSize + nameSize;
                // The last entry's padding may lie past the end of the file: qemu writes the table unpadded.
                if (entry > got - pos) return $"snapshot {i} runs past the end of the file or the table's size limit";
                entry = (entry + 7) / 8 * 8;
                if ((ulong)l1Size * L1EntrySize > (ulong)MaxL1TableBytes) return $"snapshot {i} has an L1 table of {l1Size} entries";
                if (l1Offset % (ulong)header.ClusterSize != 0) return $"snapshot {i} has its L1 table at {l1Offset}, not aligned to the cluster size";
                if (l1Size > 0 && (l1Offset > (ulong)fileLength || (ulong)fileLength - l1Offset < (ulong)l1Size * L1EntrySize))
                    return $"snapshot {i} has its L1 table at {l1Offset} ({l1Size} entries), past the end of the file";
                pos += entry;
            }

            return null;
        }
    }
}
