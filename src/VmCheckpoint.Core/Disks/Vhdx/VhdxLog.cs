using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>
    /// Finds the active sequence of a VHDX log (MS-VHDX 2.3.3) and turns it into the writes a replay would do.
    /// Nothing is written to the file: <see cref="VhdxFileReader"/> lays the writes over what it reads.
    /// </summary>
    internal static class VhdxLog
    {
        private const int DescriptorsPerSector = LogSectorSize / LogDescriptorSize;

        internal sealed class Entry
        {
            public long Offset;          // within the log
            public long Length;
            public long Tail;
            public ulong SequenceNumber;
            public long FlushedFileOffset;
            public long LastFileOffset;
            public List<VhdxLogWrite> Writes = new List<VhdxLogWrite>();
        }

        internal sealed class Replay
        {
            public Replay(List<VhdxLogWrite> writes, long flushedFileOffset, long lastFileOffset)
            {
                Writes = writes;
                FlushedFileOffset = flushedFileOffset;
                LastFileOffset = lastFileOffset;
            }

            public List<VhdxLogWrite> Writes { get; }
            public long FlushedFileOffset { get; }
            public long LastFileOffset { get; }
        }

        /// <summary>
        /// Reads the log region and returns the writes of its active sequence, in replay order, or null when the
        /// log holds no valid sequence (then there is nothing to replay).
        /// </summary>
        public static Replay? Read(VhdxFileReader file, VhdxHeader header)
        {
            long logLength = header.LogLength;
            var log = new byte[logLength];
            file.ReadExactly(header.LogOffset, log, 0, log.Length);

            int sectors = (int)(logLength / LogSectorSize);
            var parsed = new Entry?[sectors];
            var tried = new bool[sectors];
            Entry? EntryAt(long offset)
            {
                int sector = (int)(offset / LogSectorSize);
                if (!tried[sector])
                {
                    tried[sector] = true;
                    parsed[sector] = TryParseEntry(log, offset, header.LogGuid);
                }
                return parsed[sector];
            }

            List<Entry>? best = null;
            ulong bestHead = 0;
            for (int start = 0; start < sectors; start++)
            {
                Entry? first = EntryAt((long)start * LogSectorSize);
                if (first == null) continue;
                var sequence = new List<Entry> { first };
                long covered = first.Length;
                while (true)
                {
                    Entry last = sequence[sequence.Count - 1];
                    long nextOffset = (last.Offset + last.Length) % logLength;
                    Entry? next = EntryAt(nextOffset);
                    if (next == null || next.SequenceNumber != last.SequenceNumber + 1 || covered + next.Length > logLength) break;
                    sequence.Add(next);
                    covered += next.Length;
                }
                Entry head = sequence[sequence.Count - 1];
                // A sequence is valid only if its head's tail is one of its own entries.
                int tailIndex = sequence.FindIndex(e => e.Offset == head.Tail);
                if (tailIndex < 0) continue;
                if (best == null || head.SequenceNumber > bestHead)
                {
                    best = sequence.GetRange(tailIndex, sequence.Count - tailIndex);
                    bestHead = head.SequenceNumber;
                }
            }
            if (best == null) return null;

            Entry active = best[best.Count - 1];
            var writes = new List<VhdxLogWrite>();
            foreach (Entry entry in best)
            {
                foreach (VhdxLogWrite write in entry.Writes)
                {
                    if (write.FileOffset < HeaderSectionSize)
                        throw new CorruptImageException(file.Path, $"log entry {entry.SequenceNumber} writes into the header section (file offset {write.FileOffset})");
                    if (write.FileOffset < header.LogOffset + logLength && write.FileOffset + write.Length > header.LogOffset)
                        throw new CorruptImageException(file.Path, $"log entry {entry.SequenceNumber} writes into the log itself (file offset {write.FileOffset})");
                    writes.Add(write);
                }
            }
            if (active.FlushedFileOffset > file.PhysicalLength)
                throw new CorruptImageException(file.Path, $"log FlushedFileOffset {active.FlushedFileOffset} is past the end of the file ({file.PhysicalLength} bytes): the file was truncated");
            return new Replay(writes, active.FlushedFileOffset, active.LastFileOffset);
        }

        /// <summary>Parses the entry at <paramref name="offset"/> in the log, or returns null if it is not a valid entry.</summary>
        private static Entry? TryParseEntry(byte[] log, long offset, Guid logGuid)
        {
            long logLength = log.Length;
            int o = (int)offset;
            if (BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(o + LogEntrySignatureField)) != LogEntrySignature) return null;
            uint entryLength = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(o + LogEntryLengthField));
            uint tail = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(o + LogEntryTailField));
            ulong sequence = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(o + LogEntrySequenceNumberField));
            uint descriptorCount = BinaryPrimitives.ReadUInt32LittleEndian(log.AsSpan(o + LogEntryDescriptorCountField));
            ulong flushed = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(o + LogEntryFlushedFileOffsetField));
            ulong last = BinaryPrimitives.ReadUInt64LittleEndian(log.AsSpan(o + LogEntryLastFileOffsetField));
            if (entryLength == 0 || entryLength % LogSectorSize != 0 || entryLength > logLength) return null;
            if (tail % LogSectorSize != 0 || tail >= logLength) return null;
            if (sequence == 0) return null;
            if (VhdxHeader.ReadGuid(log, o + LogEntryLogGuidField) != logGuid) return null;
            if (flushed > (ulong)MaxVirtualSize * 2 || last > (ulong)MaxVirtualSize * 2) return null;
            long descriptorSectors = (LogEntryHeaderSize + (long)descriptorCount * LogDescriptorSize + LogSectorSize - 1) / LogSectorSize;
            if (descriptorSectors > entryLength / LogSectorSize) return null;

            // Copy the entry out of the circular log so that the checksum and the sectors are contiguous.
            var entry = new byte[entryLength];
            for (long done = 0; done < entryLength; done += LogSectorSize)
                Buffer.BlockCopy(log, (int)((offset + done) % logLength), entry, (int)done, LogSectorSize);
            uint stored = BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(LogEntryChecksumField));
            if (Crc32C.ComputeWithZeroedField(entry, 0, entry.Length, LogEntryChecksumField) != stored) return null;

            var result = new Entry
            {
                Offset = offset,
                Length = entryLength,
                Tail = tail,
                SequenceNumber = sequence,
                FlushedFileOffset = (long)flushed,
                LastFileOffset = (long)last,
            };
            long dataSector = descriptorSectors;
            for (long i = 0; i < descriptorCount; i++)
            {
                // Descriptors follow the 64-byte entry header, so slot i + 2 of the descriptor sectors.
                int d = (int)((i + 2) * LogDescriptorSize);
                uint signature = BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(d + LogDescriptorSignatureField));
                ulong fileOffset = BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(d + LogDescriptorFileOffsetField));
                ulong descriptorSequence = BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(d + LogDescriptorSequenceNumberField));
                if (descriptorSequence != sequence) return null;
                if (fileOffset % LogSectorSize != 0 || fileOffset > (ulong)MaxVirtualSize * 2) return null;
                if (signature == LogZeroDescriptorSignature)
                {
                    ulong zeroLength = BinaryPrimitives.ReadUInt64LittleEndian(entry.AsSpan(d + LogDescriptorZeroLengthField));
                    if (zeroLength == 0 || zeroLength % LogSectorSize != 0 || zeroLength > (ulong)MaxVirtualSize * 2) return null;
                    result.Writes.Add(new VhdxLogWrite((long)fileOffset, (long)zeroLength, null));
                }
                else if (signature == LogDataDescriptorSignature)
                {
                    if ((dataSector + 1) * LogSectorSize > entryLength) return null;
                    int s = (int)(dataSector * LogSectorSize);
                    if (BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(s)) != LogDataSectorSignature) return null;
                    if (BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(s + LogDataSectorSequenceHighField)) != (uint)(sequence >> 32)) return null;
                    if (BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(s + LogDataSectorSequenceLowField)) != (uint)sequence) return null;
                    // The sector's first 8 and last 4 bytes hold the signature and sequence; the real ones are in the descriptor.
                    var data = new byte[LogSectorSize];
                    Buffer.BlockCopy(entry, d + LogDescriptorLeadingBytesField, data, 0, 8);
                    Buffer.BlockCopy(entry, s + LogDataSectorDataField, data, 8, LogDataSectorDataLength);
                    Buffer.BlockCopy(entry, d + LogDescriptorTrailingBytesField, data, 8 + LogDataSectorDataLength, 4);
                    result.Writes.Add(new VhdxLogWrite((long)fileOffset, LogSectorSize, data));
                    dataSector++;
                }
                else
                {
                    return null;
                }
            }
            if (dataSector * LogSectorSize != entryLength) return null;
            return result;
        }
    }
}
