using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>The metadata items of a VHDX (MS-VHDX 2.6): disk geometry and, for a differencing disk, its parent.</summary>
    internal sealed class VhdxMetadata
    {
        public int BlockSize { get; set; }
        public bool LeaveBlockAllocated { get; set; }
        public bool HasParent { get; set; }
        public long VirtualSize { get; set; }
        public int LogicalSectorSize { get; set; }
        public int PhysicalSectorSize { get; set; }
        public Guid Page83Id { get; set; }
        /// <summary>Parent locator key/value pairs, or null for a disk without a parent.</summary>
        public Dictionary<string, string>? ParentLocator { get; set; }

        public static VhdxMetadata Read(VhdxFileReader file, VhdxRegion region)
        {
            var table = new byte[MetadataTableSize];
            file.ReadExactly(region.Offset, table, 0, table.Length);
            if (BinaryPrimitives.ReadUInt64LittleEndian(table.AsSpan(MetadataSignatureField)) != MetadataSignature)
                throw new CorruptImageException(file.Path, "metadata table has no 'metadata' signature");
            ushort count = BinaryPrimitives.ReadUInt16LittleEndian(table.AsSpan(MetadataEntryCountField));
            if (count > MaxMetadataEntries)
                throw new CorruptImageException(file.Path, $"metadata entry count {count} exceeds {MaxMetadataEntries}");

            var items = new Dictionary<Guid, byte[]>();
            for (int i = 0; i < count; i++)
            {
                int e = MetadataTableHeaderSize + i * MetadataEntrySize;
                Guid id = VhdxHeader.ReadGuid(table, e + MetadataEntryItemIdField);
                uint offset = BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(e + MetadataEntryOffsetField));
                uint length = BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(e + MetadataEntryLengthField));
                uint flags = BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(e + MetadataEntryFlagsField));
                bool known = id == FileParametersItem || id == VirtualDiskSizeItem || id == Page83DataItem
                    || id == LogicalSectorSizeItem || id == PhysicalSectorSizeItem || id == ParentLocatorItem;
                if (!known)
                {
                    if ((flags & MetadataFlagIsRequired) != 0)
                        throw new CorruptImageException(file.Path, $"unknown required metadata item {id}: written by a newer VHDX version");
                    continue;
                }
                if (length > MaxMetadataItemLength)
                    throw new CorruptImageException(file.Path, $"metadata item {id} length {length} exceeds 1 MiB");
                if (length != 0 && (offset < MetadataTableSize || offset > region.Length - length))
                    throw new CorruptImageException(file.Path, $"metadata item {id} at [{offset}, +{length}) is outside the metadata region (64 KiB..{region.Length})");
                if (items.ContainsKey(id))
                    throw new CorruptImageException(file.Path, $"metadata item {id} is listed twice");
                var data = new byte[length];
                if (length != 0) file.ReadExactly(region.Offset + offset, data, 0, data.Length);
                items.Add(id, data);
            }

            var m = new VhdxMetadata();
            byte[] parameters = Require(file, items, FileParametersItem, "file parameters", FileParametersLength);
            uint blockSize = BinaryPrimitives.ReadUInt32LittleEndian(parameters.AsSpan(FileParametersBlockSizeField));
            if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
                throw new CorruptImageException(file.Path, $"block size {blockSize} is not a power of two from 1 MiB to 256 MiB");
            uint parameterFlags = BinaryPrimitives.ReadUInt32LittleEndian(parameters.AsSpan(FileParametersFlagsField));
            m.BlockSize = (int)blockSize;
            m.LeaveBlockAllocated = (parameterFlags & FileParametersLeaveBlockAllocated) != 0;
            m.HasParent = (parameterFlags & FileParametersHasParent) != 0;

            uint logical = BinaryPrimitives.ReadUInt32LittleEndian(Require(file, items, LogicalSectorSizeItem, "logical sector size", 4));
            if (logical != 512 && logical != 4096)
                throw new CorruptImageException(file.Path, $"logical sector size {logical} is neither 512 nor 4096");
            m.LogicalSectorSize = (int)logical;
            uint physical = BinaryPrimitives.ReadUInt32LittleEndian(Require(file, items, PhysicalSectorSizeItem, "physical sector size", 4));
            if (physical != 512 && physical != 4096)
                throw new CorruptImageException(file.Path, $"physical sector size {physical} is neither 512 nor 4096");
            m.PhysicalSectorSize = (int)physical;

            ulong size = BinaryPrimitives.ReadUInt64LittleEndian(Require(file, items, VirtualDiskSizeItem, "virtual disk size", 8));
            if (size == 0 || size > (ulong)MaxVirtualSize || size % logical != 0)
                throw new CorruptImageException(file.Path, $"virtual disk size {size} is not a multiple of the {logical}-byte sector from 1 sector to 64 TiB");
            m.VirtualSize = (long)size;

            m.Page83Id = VhdxHeader.ReadGuid(Require(file, items, Page83DataItem, "page 83 data", 16), 0);

            if (m.HasParent)
            {
                byte[] locator = Require(file, items, ParentLocatorItem, "parent locator", ParentLocatorHeaderSize);
                m.ParentLocator = ParseParentLocator(file.Path, locator);
            }
            return m;
        }

        private static byte[] Require(VhdxFileReader file, Dictionary<Guid, byte[]> items, Guid id, string name, int minLength)
        {
            if (!items.TryGetValue(id, out byte[]? data))
                throw new CorruptImageException(file.Path, $"required metadata item '{name}' is missing");
            if (data.Length < minLength)
                throw new CorruptImageException(file.Path, $"metadata item '{name}' is {data.Length} bytes, expected at least {minLength}");
            return data;
        }

        private static Dictionary<string, string> ParseParentLocator(string path, byte[] locator)
        {
            Guid type = VhdxHeader.ReadGuid(locator, ParentLocatorTypeField);
            if (type != VhdxParentLocatorType)
                throw new CorruptImageException(path, $"parent locator type {type} is not the VHDX parent locator");
            ushort count = BinaryPrimitives.ReadUInt16LittleEndian(locator.AsSpan(ParentLocatorKeyValueCountField));
            if (ParentLocatorHeaderSize + (long)count * ParentLocatorEntrySize > locator.Length)
                throw new CorruptImageException(path, $"parent locator key/value count {count} does not fit in its {locator.Length} bytes");
            var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int i = 0; i < count; i++)
            {
                int e = ParentLocatorHeaderSize + i * ParentLocatorEntrySize;
                string key = ReadString(path, locator, e + ParentLocatorKeyOffsetField, e + ParentLocatorKeyLengthField, "key");
                string value = ReadString(path, locator, e + ParentLocatorValueOffsetField, e + ParentLocatorValueLengthField, "value");
                if (pairs.ContainsKey(key))
                    throw new CorruptImageException(path, $"parent locator key '{key}' appears twice");
                pairs.Add(key, value);
            }
            return pairs;
        }

        private static string ReadString(string path, byte[] locator, int offsetField, int lengthField, string what)
        {
            uint offset = BinaryPrimitives.ReadUInt32LittleEndian(locator.AsSpan(offsetField));
            ushort length = BinaryPrimitives.ReadUInt16LittleEndian(locator.AsSpan(lengthField));
            if (length == 0 || length % 2 != 0 || offset > (uint)locator.Length || length > locator.Length - offset)
                throw new CorruptImageException(path, $"parent locator {what} at [{offset}, +{length}) is empty, odd-sized or outside the locator");
            return Encoding.Unicode.GetString(locator, (int)offset, length);
        }

        /// <summary>Serializes the metadata region (table and items) into a zeroed buffer of at least 1 MiB.</summary>
        public void WriteTo(byte[] region)
        {
            Array.Clear(region, 0, MiB);
            BinaryPrimitives.WriteUInt64LittleEndian(region.AsSpan(MetadataSignatureField), MetadataSignature);
            var entries = new List<(Guid Id, byte[] Data, uint Flags)>();

            var parameters = new byte[FileParametersLength];
            BinaryPrimitives.WriteUInt32LittleEndian(parameters.AsSpan(FileParametersBlockSizeField), (uint)BlockSize);
            uint flags = (LeaveBlockAllocated ? FileParametersLeaveBlockAllocated : 0) | (HasParent ? FileParametersHasParent : 0);
            BinaryPrimitives.WriteUInt32LittleEndian(parameters.AsSpan(FileParametersFlagsField), flags);
            entries.Add((FileParametersItem, parameters, MetadataFlagIsRequired));

            var size = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(size, (ulong)VirtualSize);
            entries.Add((VirtualDiskSizeItem, size, MetadataFlagIsRequired | MetadataFlagIsVirtualDisk));
            entries.Add((Page83DataItem, Page83Id.ToByteArray(), MetadataFlagIsRequired | MetadataFlagIsVirtualDisk));
            var logical = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(logical, (uint)LogicalSectorSize);
            entries.Add((LogicalSectorSizeItem, logical, MetadataFlagIsRequired | MetadataFlagIsVirtualDisk));
            var physical = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(physical, (uint)PhysicalSectorSize);
            entries.Add((PhysicalSectorSizeItem, physical, MetadataFlagIsRequired | MetadataFlagIsVirtualDisk));
            if (ParentLocator != null) entries.Add((ParentLocatorItem, SerializeParentLocator(ParentLocator), MetadataFlagIsRequired));

            BinaryPrimitives.WriteUInt16LittleEndian(region.AsSpan(MetadataEntryCountField), (ushort)entries.Count);
            int itemOffset = MetadataTableSize;
            for (int i = 0; i < entries.Count; i++)
            {
                int e = MetadataTableHeaderSize + i * MetadataEntrySize;
                VhdxHeader.WriteGuid(region, e + MetadataEntryItemIdField, entries[i].Id);
                BinaryPrimitives.WriteUInt32LittleEndian(region.AsSpan(e + MetadataEntryOffsetField), (uint)itemOffset);
                BinaryPrimitives.WriteUInt32LittleEndian(region.AsSpan(e + MetadataEntryLengthField), (uint)entries[i].Data.Length);
                BinaryPrimitives.WriteUInt32LittleEndian(region.AsSpan(e + MetadataEntryFlagsField), entries[i].Flags);
                Buffer.BlockCopy(entries[i].Data, 0, region, itemOffset, entries[i].Data.Length);
                itemOffset += (int)RoundUp(entries[i].Data.Length, 8);
            }
        }

        private static byte[] SerializeParentLocator(Dictionary<string, string> pairs)
        {
            int stringsStart = ParentLocatorHeaderSize + pairs.Count * ParentLocatorEntrySize;
            int total = stringsStart;
            foreach (var pair in pairs) total += Encoding.Unicode.GetByteCount(pair.Key) + Encoding.Unicode.GetByteCount(pair.Value);
            var locator = new byte[total];
            VhdxHeader.WriteGuid(locator, ParentLocatorTypeField, VhdxParentLocatorType);
            BinaryPrimitives.WriteUInt16LittleEndian(locator.AsSpan(ParentLocatorKeyValueCountField), (ushort)pairs.Count);
            int e = ParentLocatorHeaderSize, at = stringsStart;
            foreach (var pair in pairs)
            {
                int keyLength = Encoding.Unicode.GetBytes(pair.Key, 0, pair.Key.Length, locator, at);
                BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(e + ParentLocatorKeyOffsetField), (uint)at);
                BinaryPrimitives.WriteUInt16LittleEndian(locator.AsSpan(e + ParentLocatorKeyLengthField), (ushort)keyLength);
                at += keyLength;
                int valueLength = Encoding.Unicode.GetBytes(pair.Value, 0, pair.Value.Length, locator, at);
                BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(e + ParentLocatorValueOffsetField), (uint)at);
                BinaryPrimitives.WriteUInt16LittleEndian(locator.AsSpan(e + ParentLocatorValueLengthField), (ushort)valueLength);
                at += valueLength;
                e += ParentLocatorEntrySize;
            }
            return locator;
        }
    }
}
