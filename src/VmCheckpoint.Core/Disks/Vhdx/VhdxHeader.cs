using System;
using System.Buffers.Binary;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>One of the two 4 KiB VHDX headers; the valid one with the higher sequence number is current.</summary>
    internal sealed class VhdxHeader
    {
        public ulong SequenceNumber { get; set; }
        public Guid FileWriteGuid { get; set; }
        public Guid DataWriteGuid { get; set; }
        public Guid LogGuid { get; set; }
        public uint LogLength { get; set; }
        public long LogOffset { get; set; }

        /// <summary>Parses a header, or returns null with the reason when its signature, checksum or version is wrong.</summary>
        public static VhdxHeader? TryParse(byte[] data, out string reason)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(HeaderSignatureField)) != HeaderSignature)
            {
                reason = "signature is not 'head'";
                return null;
            }
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(HeaderChecksumField));
            uint computed = Crc32C.ComputeWithZeroedField(data, 0, HeaderSize, HeaderChecksumField);
            if (stored != computed)
            {
                reason = $"checksum 0x{stored:X8} does not match the content (0x{computed:X8})";
                return null;
            }
            ushort version = BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(HeaderVersionField));
            if (version != SupportedVersion)
            {
                reason = $"version {version} is not supported (expected {SupportedVersion})";
                return null;
            }
            ushort logVersion = BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan(HeaderLogVersionField));
            if (logVersion != SupportedLogVersion)
            {
                reason = $"log version {logVersion} is not supported (expected {SupportedLogVersion})";
                return null;
            }
            ulong logOffset = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(HeaderLogOffsetField));
            if (logOffset > long.MaxValue)
            {
                reason = $"log offset {logOffset} is out of range";
                return null;
            }
            reason = "";
            return new VhdxHeader
            {
                SequenceNumber = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(HeaderSequenceNumberField)),
                FileWriteGuid = ReadGuid(data, HeaderFileWriteGuidField),
                DataWriteGuid = ReadGuid(data, HeaderDataWriteGuidField),
                LogGuid = ReadGuid(data, HeaderLogGuidField),
                LogLength = BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(HeaderLogLengthField)),
                LogOffset = (long)logOffset,
            };
        }

        /// <summary>Writes this header into a zeroed 4 KiB buffer, checksum included.</summary>
        public void WriteTo(byte[] data)
        {
            Array.Clear(data, 0, HeaderSize);
            BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(HeaderSignatureField), HeaderSignature);
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(HeaderSequenceNumberField), SequenceNumber);
            WriteGuid(data, HeaderFileWriteGuidField, FileWriteGuid);
            WriteGuid(data, HeaderDataWriteGuidField, DataWriteGuid);
            WriteGuid(data, HeaderLogGuidField, LogGuid);
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(HeaderLogVersionField), SupportedLogVersion);
            BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(HeaderVersionField), SupportedVersion);
            BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(HeaderLogLengthField), LogLength);
            BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(HeaderLogOffsetField), (ulong)LogOffset);
            uint crc = Crc32C.ComputeWithZeroedField(data, 0, HeaderSize, HeaderChecksumField);
            BinaryPrimitives.WriteUInt32LittleEndian(data.AsSpan(HeaderChecksumField), crc);
        }

        // MS-GUIDs are stored as .NET's Guid(byte[]) lays them out: the first three fields little-endian.
        public static Guid ReadGuid(byte[] data, int offset)
        {
            var bytes = new byte[16];
            Buffer.BlockCopy(data, offset, bytes, 0, 16);
            return new Guid(bytes);
        }

        public static void WriteGuid(byte[] data, int offset, Guid value) =>
            Buffer.BlockCopy(value.ToByteArray(), 0, data, offset, 16);
    }
}
