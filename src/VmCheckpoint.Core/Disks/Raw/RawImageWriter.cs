using System;
using System.IO;

namespace VmCheckpoint.Core.Disks.Raw
{
    /// <summary>Writes a sparse raw image: the file is sized up front and only non-zero clusters are written.</summary>
    internal sealed class RawImageWriter : IDiskImageWriter
    {
        /// <summary>Granularity of the zero test; matches common file system allocation units.</summary>
        internal const int ClusterSize = 64 * 1024;

        private readonly FileStream _file;
        private readonly SequentialClusterBuffer _buffer;
        private readonly WriteBehind _writeBehind;
        private readonly DirectFile? _direct;
        private bool _completed;

        public RawImageWriter(string path, long virtualSize)
        {
            if (virtualSize < 0) throw new ArgumentOutOfRangeException(nameof(virtualSize));
            Path = path;
            VirtualSize = virtualSize;
            _file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1);
            try
            {
                SparseFile.MarkSparse(_file);
                _file.SetLength(virtualSize);
            }
            catch
            {
                _file.Dispose();
                throw;
            }

            _buffer = new SequentialClusterBuffer(ClusterSize, virtualSize, WriteCluster);
            _writeBehind = new WriteBehind(_file);
            _direct = DirectFile.TryOpenForWriting(path);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Raw;
        public long VirtualSize { get; }

        public void Write(long offset, byte[] buffer, int index, int count)
        {
            if (_completed) throw new InvalidOperationException("The image is already complete.");
            _buffer.Write(offset, buffer, index, count);
        }

        public void Complete()
        {
            if (_completed) return;
            _buffer.Flush();
            _file.Flush(flushToDisk: true);
            _completed = true;
        }

        public void Dispose()
        {
            _buffer.Dispose();
            _direct?.Dispose();
            _file.Dispose();
        }

        /// <summary>Bytes written past the page cache (tests).</summary>
        internal long DirectBytes => _direct?.DirectBytes ?? 0;

        private void WriteCluster(long firstCluster, int clusters, byte[] buffer, int index)
        {
            long offset = firstCluster * ClusterSize;
            int length = (int)Math.Min((long)clusters * ClusterSize, VirtualSize - offset);
            DirectFile.WriteAt(_direct, _file, _writeBehind, offset, buffer, index, length);
        }
    }
}
