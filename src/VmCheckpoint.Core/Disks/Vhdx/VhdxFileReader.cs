using System;
using System.Collections.Generic;
using System.IO;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>
    /// Reads a VHDX file as it would be after its log was replayed, without writing to it: the file's bytes,
    /// then the replayed log writes laid over them in log order. Past the physical end (up to the length the
    /// log says the file has) reads zero.
    /// </summary>
    internal sealed class VhdxFileReader : IDisposable
    {
        private readonly FileStream _stream;
        private readonly DirectFile? _direct;
        private readonly List<VhdxLogWrite> _overlay = new List<VhdxLogWrite>();
        private long _overlayStart = long.MaxValue;
        private long _overlayEnd = long.MinValue;

        public VhdxFileReader(string path)
        {
            Path = path;
            _stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1, FileOptions.None);
            PhysicalLength = _stream.Length;
            Length = PhysicalLength;
            _direct = DirectFile.TryOpenForReading(path);
        }

        public string Path { get; }

        public long PhysicalLength { get; }

        /// <summary>The file's length once the log is replayed.</summary>
        public long Length { get; private set; }

        public void ApplyLog(IReadOnlyList<VhdxLogWrite> writes, long lastFileOffset)
        {
            foreach (VhdxLogWrite write in writes)
            {
                _overlay.Add(write);
                _overlayStart = Math.Min(_overlayStart, write.FileOffset);
                _overlayEnd = Math.Max(_overlayEnd, write.FileOffset + write.Length);
                // Zero writes past the end do not grow the file; data writes do (replay would extend it).
                if (write.Data != null) Length = Math.Max(Length, write.FileOffset + write.Length);
            }
            Length = Math.Max(Length, lastFileOffset);
        }

        /// <summary>Reads exactly <paramref name="count"/> bytes at <paramref name="offset"/>, which must lie within <see cref="Length"/>.</summary>
        public void ReadExactly(long offset, byte[] buffer, int index, int count)
        {
            if (offset < 0 || count < 0 || offset > Length - count)
                throw new CorruptImageException(Path, $"read of {count} bytes at file offset {offset} is past the end of the file ({Length} bytes)");
            int done = 0;
            if (offset < PhysicalLength)
            {
                int fromFile = (int)Math.Min(count, PhysicalLength - offset);
                done = Math.Max(0, _direct?.TryRead(offset, buffer, index, fromFile) ?? -1);
                _stream.Position = offset + done;
                while (done < fromFile)
                {
                    int n = _stream.Read(buffer, index + done, fromFile - done);
                    if (n <= 0) throw new CorruptImageException(Path, $"file ended at {offset + done} while reading (it shrank while open?)");
                    done += n;
                }
            }
            if (done < count) Array.Clear(buffer, index + done, count - done);
            if (_overlay.Count != 0 && offset < _overlayEnd && offset + count > _overlayStart)
                ApplyOverlay(offset, buffer, index, count);
        }

        /// <summary>
        /// The ranges of [offset, offset + length) of the file that may hold non-zero bytes: the file system's
        /// allocated ranges (a hole reads as zeros, and qemu leaves the unwritten sectors of a block as holes), or
        /// the whole range where replayed log writes land in it.
        /// </summary>
        public IEnumerable<DiskExtent> DataRanges(long offset, long length)
        {
            if (_overlay.Count != 0 && offset < _overlayEnd && offset + length > _overlayStart) return new[] { new DiskExtent(offset, length) };
            long inFile = Math.Min(length, PhysicalLength - offset);
            if (inFile <= 0) return new DiskExtent[0];
            return SparseFile.GetAllocatedRanges(_stream, offset, inFile);
        }

        private void ApplyOverlay(long offset, byte[] buffer, int index, int count)
        {
            long end = offset + count;
            foreach (VhdxLogWrite write in _overlay)
            {
                long from = Math.Max(offset, write.FileOffset);
                long to = Math.Min(end, write.FileOffset + write.Length);
                if (from >= to) continue;
                int length = (int)(to - from);
                int target = index + (int)(from - offset);
                if (write.Data == null) Array.Clear(buffer, target, length);
                else Buffer.BlockCopy(write.Data, (int)(from - write.FileOffset), buffer, target, length);
            }
        }

        public void Dispose()
        {
            _direct?.Dispose();
            _stream.Dispose();
        }
    }

    /// <summary>One write replayed from the log: 4 KiB of data, or a run of zeros when <see cref="Data"/> is null.</summary>
    internal sealed class VhdxLogWrite
    {
        public VhdxLogWrite(long fileOffset, long length, byte[]? data)
        {
            FileOffset = fileOffset;
            Length = length;
            Data = data;
        }

        public long FileOffset { get; }
        public long Length { get; }
        public byte[]? Data { get; }
    }
}
