using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>A region of the file: its offset and length, both multiples of 1 MiB.</summary>
    internal readonly struct VhdxRegion
    {
        public VhdxRegion(long offset, long length)
        {
            Offset = offset;
            Length = length;
        }

        public long Offset { get; }
        public long Length { get; }
        public long End => Offset + Length;
        public bool Overlaps(long offset, long length) => offset < End && offset + length > Offset;
    }

    /// <summary>The region table: where the BAT and the metadata live.</summary>
    internal sealed class VhdxRegionTable
    {
        public VhdxRegionTable(VhdxRegion bat, VhdxRegion metadata)
        {
            Bat = bat;
            Metadata = metadata;
        }

        public VhdxRegion Bat { get; }
        public VhdxRegion Metadata { get; }

        /// <summary>Reads the first valid copy of the region table and checks its regions against the file and the log.</summary>
        public static VhdxRegionTable Read(VhdxFileReader file, VhdxRegion log)
        {
            var buffer = new byte[RegionTableSize];
            string reason1 = TryChecksum(file, RegionTable1Offset, buffer);
            if (reason1.Length != 0)
            {
                string reason2 = TryChecksum(file, RegionTable2Offset, buffer);
                if (reason2.Length != 0)
                    throw new CorruptImageException(file.Path, $"both region tables are invalid: copy 1 {reason1}; copy 2 {reason2}");
            }

            uint count = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(RegionEntryCountField));
            if (count > MaxRegionEntries)
                throw new CorruptImageException(file.Path, $"region table entry count {count} exceeds {MaxRegionEntries}");
            VhdxRegion? bat = null, metadata = null;
            var seen = new List<VhdxRegion>();
            if (log.Length != 0) seen.Add(log);
            for (int i = 0; i < count; i++)
            {
                int e = RegionTableHeaderSize + i * RegionEntrySize;
                Guid id = VhdxHeader.ReadGuid(buffer, e + RegionEntryGuidField);
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(buffer.AsSpan(e + RegionEntryFileOffsetField));
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(e + RegionEntryLengthField));
                bool required = (BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(e + RegionEntryRequiredField)) & 1) != 0;
                string name = id == BatRegion ? "BAT" : id == MetadataRegion ? "metadata" : $"region {id}";
                if (offset % RegionAlignment != 0 || offset < (ulong)HeaderSectionSize)
                    throw new CorruptImageException(file.Path, $"{name} region offset {offset} is not a multiple of 1 MiB past the header section");
                if (length == 0 || length % RegionAlignment != 0)
                    throw new CorruptImageException(file.Path, $"{name} region length {length} is not a non-zero multiple of 1 MiB");
                if ((ulong)file.Length < length || offset > (ulong)file.Length - length)
                    throw new CorruptImageException(file.Path, $"{name} region [{offset}, +{length}) lies past the end of the file ({file.Length} bytes)");
                var region = new VhdxRegion((long)offset, length);
                foreach (VhdxRegion other in seen)
                {
                    if (other.Overlaps(region.Offset, region.Length))
                        throw new CorruptImageException(file.Path, $"{name} region [{offset}, +{length}) overlaps another region or the log at [{other.Offset}, +{other.Length})");
                }
                seen.Add(region);
                if (id == BatRegion)
                {
                    if (bat != null) throw new CorruptImageException(file.Path, "region table lists the BAT twice");
                    bat = region;
                }
                else if (id == MetadataRegion)
                {
                    if (metadata != null) throw new CorruptImageException(file.Path, "region table lists the metadata region twice");
                    metadata = region;
                }
                else if (required)
                {
                    throw new CorruptImageException(file.Path, $"unknown required region {id}: written by a newer VHDX version");
                }
            }
            if (bat == null) throw new CorruptImageException(file.Path, "region table has no BAT region");
            if (metadata == null) throw new CorruptImageException(file.Path, "region table has no metadata region");
            return new VhdxRegionTable(bat.Value, metadata.Value);
        }

        private static string TryChecksum(VhdxFileReader file, long offset, byte[] buffer)
        {
            file.ReadExactly(offset, buffer, 0, RegionTableSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(RegionSignatureField)) != RegionTableSignature)
                return "has no 'regi' signature";
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(RegionChecksumField));
            uint computed = Crc32C.ComputeWithZeroedField(buffer, 0, RegionTableSize, RegionChecksumField);
            return stored == computed ? "" : $"checksum 0x{stored:X8} does not match the content (0x{computed:X8})";
        }

        /// <summary>Writes a region table listing the BAT and metadata regions (both required) into a 64 KiB buffer.</summary>
        public static void WriteTo(byte[] buffer, VhdxRegion bat, VhdxRegion metadata)
        {
            Array.Clear(buffer, 0, RegionTableSize);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(RegionSignatureField), RegionTableSignature);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(RegionEntryCountField), 2);
            WriteEntry(buffer, RegionTableHeaderSize, BatRegion, bat);
            WriteEntry(buffer, RegionTableHeaderSize + RegionEntrySize, MetadataRegion, metadata);
            uint crc = Crc32C.ComputeWithZeroedField(buffer, 0, RegionTableSize, RegionChecksumField);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(RegionChecksumField), crc);
        }

        private static void WriteEntry(byte[] buffer, int e, Guid id, VhdxRegion region)
        {
            VhdxHeader.WriteGuid(buffer, e + RegionEntryGuidField, id);
            BinaryPrimitives.WriteUInt64LittleEndian(buffer.AsSpan(e + RegionEntryFileOffsetField), (ulong)region.Offset);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(e + RegionEntryLengthField), (uint)region.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(e + RegionEntryRequiredField), 1);
        }
    }
}
