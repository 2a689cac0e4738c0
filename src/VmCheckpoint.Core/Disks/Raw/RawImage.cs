using System;
using System.Collections.Generic;
using System.IO;

namespace VmCheckpoint.Core.Disks.Raw
{
    /// <summary>A raw image: guest offset = file offset, holes of a sparse file are unallocated.</summary>
    internal sealed class RawImage : IDiskImage, IImageWarnings
    {
        private readonly FileStream _file;
        private readonly DirectFile? _direct;

        public RawImage(string path, FileStream file, string? warning = null)
        {
            Path = path;
            Warnings = warning == null ? new string[0] : new[] { warning };
            _file = file;
            VirtualSize = file.Length;
            _direct = DirectFile.TryOpenForReading(path);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Raw;
        public long VirtualSize { get; }
        public IReadOnlyList<string> Warnings { get; }

        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            StreamIO.CheckRange(offset, length, VirtualSize);
            return DiskExtents.Merge(SparseFile.GetAllocatedRanges(_file, offset, length));
        }

        public void Read(long offset, byte[] buffer, int index, int count)
        {
            StreamIO.CheckBuffer(buffer, index, count);
            StreamIO.CheckRange(offset, count, VirtualSize);
            // Zero padding covers a file truncated while it is open.
            DirectFile.ReadAtZeroPadded(_direct, _file, offset, buffer, index, count);
        }

        public void Dispose()
        {
            _direct?.Dispose();
            _file.Dispose();
        }
    }
}
