using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Text;
using static VmCheckpoint.Core.Disks.Vhd.VhdFormat;

namespace VmCheckpoint.Core.Disks.Vhd
{
    /// <summary>One parent locator entry of a differencing disk: where in the file a path to its parent is, and how it is written.</summary>
    internal readonly struct VhdParentLocator
    {
        public VhdParentLocator(uint platformCode, int dataLength, long dataOffset)
        {
            PlatformCode = platformCode;
            DataLength = dataLength;
            DataOffset = dataOffset;
        }

        public uint PlatformCode { get; }
        public int DataLength { get; }
        public long DataOffset { get; }
    }

    /// <summary>The dynamic disk header of a dynamic or differencing VHD (1024 bytes where the footer's data offset says).</summary>
    internal sealed class VhdDynamicHeader
    {
        public ulong TableOffset { get; set; }
        public int MaxTableEntries { get; set; }
        public int BlockSize { get; set; }
        public Guid ParentUniqueId { get; set; }
        public uint ParentTimeStamp { get; set; }
        public string ParentUnicodeName { get; set; } = "";
        public List<VhdParentLocator> ParentLocators { get; } = new List<VhdParentLocator>();

        /// <summary>Parses and checks a header; a bad one throws <see cref="CorruptImageException"/> naming the field.</summary>
        public static VhdDynamicHeader Parse(string path, byte[] data)
        {
            if (!HasCookie(data, 0, DynamicHeaderCookie))
                throw new CorruptImageException(path, "the dynamic disk header has no 'cxsparse' cookie");
            ReadOnlySpan<byte> h = data.AsSpan(0, DynamicHeaderSize);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderChecksum));
            uint computed = Checksum(data, 0, DynamicHeaderSize, HeaderChecksum);
            if (stored != computed)
                throw new CorruptImageException(path, $"the dynamic disk header's checksum is 0x{stored:x8}, not 0x{computed:x8}");
            uint version = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderVersion));
            if (version >> 16 != FormatVersion >> 16)
                throw new CorruptImageException(path, $"dynamic disk header version 0x{version:x8} is not 1.x");
            uint blockSize = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderBlockSize));
            if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
                throw new CorruptImageException(path, $"block size {blockSize} is not a power of two from {MinBlockSize} to {MaxBlockSize} bytes");
            uint entries = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderMaxTableEntries));
            if (entries > int.MaxValue / BatEntrySize)
                throw new CorruptImageException(path, $"max table entries {entries} is too large");

            var header = new VhdDynamicHeader
            {
                TableOffset = BinaryPrimitives.ReadUInt64BigEndian(h.Slice(HeaderTableOffset)),
                MaxTableEntries = (int)entries,
                BlockSize = (int)blockSize,
                ParentUniqueId = VhdFooter.ReadGuid(h.Slice(HeaderParentUniqueId)),
                ParentTimeStamp = BinaryPrimitives.ReadUInt32BigEndian(h.Slice(HeaderParentTimeStamp)),
                ParentUnicodeName = DecodeParentName(h.Slice(HeaderParentUnicodeName, ParentUnicodeNameLength)),
            };
            for (int i = 0; i < ParentLocatorCount; i++)
            {
                ReadOnlySpan<byte> e = h.Slice(HeaderParentLocators + i * ParentLocatorSize, ParentLocatorSize);
                uint code = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(LocatorPlatformCode));
                if (code == PlatformNone) continue;
                uint length = BinaryPrimitives.ReadUInt32BigEndian(e.Slice(LocatorDataLength));
                ulong offset = BinaryPrimitives.ReadUInt64BigEndian(e.Slice(LocatorDataOffset));
                if (length > MaxLocatorBytes || offset > long.MaxValue)
                    throw new CorruptImageException(path, $"parent locator {i} claims {length} bytes at {offset}");
                header.ParentLocators.Add(new VhdParentLocator(code, (int)length, (long)offset));
            }

            return header;
        }

        /// <summary>Writes a header for a dynamic disk without a parent, checksum included, into 1024 bytes.</summary>
        public void WriteTo(byte[] data)
        {
            Span<byte> h = data.AsSpan(0, DynamicHeaderSize);
            h.Clear();
            for (int i = 0; i < CookieLength; i++) h[i] = (byte)DynamicHeaderCookie[i];
            BinaryPrimitives.WriteUInt64BigEndian(h.Slice(HeaderDataOffset), NoDataOffset);
            BinaryPrimitives.WriteUInt64BigEndian(h.Slice(HeaderTableOffset), TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(HeaderVersion), FormatVersion);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(HeaderMaxTableEntries), (uint)MaxTableEntries);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(HeaderBlockSize), (uint)BlockSize);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(HeaderChecksum), Checksum(data, 0, DynamicHeaderSize, HeaderChecksum));
        }

        // UTF-16 big endian, NUL padded.
        private static string DecodeParentName(ReadOnlySpan<byte> bytes)
        {
            var text = new StringBuilder();
            for (int i = 0; i + 1 < bytes.Length; i += 2)
            {
                char c = (char)BinaryPrimitives.ReadUInt16BigEndian(bytes.Slice(i));
                if (c == '\0') break;
                text.Append(c);
            }

            return text.ToString();
        }
    }
}
