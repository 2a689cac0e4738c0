using System;
using System.Collections.Generic;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>A run of an exported disk: data, or zeros that nothing stores.</summary>
    public readonly struct ExportExtent
    {
        public ExportExtent(long offset, long length, bool zero)
        {
            Offset = offset;
            Length = length;
            Zero = zero;
        }

        public long Offset { get; }
        public long Length { get; }
        public bool Zero { get; }
        public long End => Offset + Length;
    }

    /// <summary>A disk served read-only over NBD.</summary>
    public interface IExportedDisk
    {
        string Name { get; }
        long Size { get; }
        /// <summary>A reader of its own for one connection: readers are not shared between threads.</summary>
        IExportReader OpenReader();
    }

    public interface IExportReader : IDisposable
    {
        /// <summary>The data and zero runs of [offset, offset + length), in order, covering it exactly.</summary>
        IReadOnlyList<ExportExtent> Map(long offset, long length);

        /// <summary>Reads [offset, offset + length) into <paramref name="buffer"/>; a block that cannot be checked throws.</summary>
        void Read(long offset, byte[] buffer, int index, int length);
    }

    /// <summary>
    /// One disk of a checkpoint as the guest saw it, read from the repository: a block the manifest lists is read from
    /// its pack and checked against its hash before a byte of it is served (<see cref="BlockReader"/>); a block it does
    /// not list is zero and is answered without reading anything.
    /// </summary>
    internal sealed class CheckpointDiskExport : IExportedDisk
    {
        private readonly BlockStore _store;
        private readonly RepositoryLayout _layout;
        private readonly DiskManifest _disk;
        private readonly int _blockSize;

        public CheckpointDiskExport(BlockStore store, RepositoryLayout layout, DiskManifest disk, int blockSize)
        {
            _store = store;
            _layout = layout;
            _disk = disk;
            _blockSize = blockSize;
        }

        public string Name => _disk.Name;
        public long Size => _disk.VirtualSize;

        public IExportReader OpenReader() => new Reader(this);

        private sealed class Reader : IExportReader
        {
            // Clients read far less than a block at a time (qemu: 64 KiB to 2 MiB); the last blocks decoded are kept so
            // that a block is decompressed and hashed once per pass, not once per request.
            private const int CachedBlocks = 4;
            private readonly CheckpointDiskExport _export;
            private readonly BlockReader _reader;
            private readonly long[] _cachedIndex = new long[CachedBlocks];
            private readonly byte[][] _cached = new byte[CachedBlocks][];
            private int _next;

            public Reader(CheckpointDiskExport export)
            {
                _export = export;
                _reader = new BlockReader(export._store, export._layout);
                for (int i = 0; i < CachedBlocks; i++) { _cachedIndex[i] = -1; _cached[i] = new byte[export._blockSize]; }
            }

            public IReadOnlyList<ExportExtent> Map(long offset, long length)
            {
                var result = new List<ExportExtent>();
                long end = Math.Min(offset + length, _export.Size);
                int bs = _export._blockSize;
                long position = offset;
                while (position < end)
                {
                    long index = position / bs;
                    bool zero = _export._disk.Blocks.Find(index) is null;
                    long runEnd = Math.Min(end, (index + 1) * (long)bs);
                    if (result.Count > 0 && result[result.Count - 1].Zero == zero)
                    {
                        var last = result[result.Count - 1];
                        result[result.Count - 1] = new ExportExtent(last.Offset, runEnd - last.Offset, zero);
                    }
                    else result.Add(new ExportExtent(position, runEnd - position, zero));
                    position = runEnd;
                }
                return result;
            }

            public void Read(long offset, byte[] buffer, int index, int length)
            {
                int bs = _export._blockSize;
                long position = offset;
                long end = offset + length;
                if (offset < 0 || end > _export.Size) throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {end}) is outside disk {_export.Name} ({_export.Size} bytes).");
                while (position < end)
                {
                    long block = position / bs;
                    int within = (int)(position - block * bs);
                    int n = (int)Math.Min(bs - within, end - position);
                    var hash = _export._disk.Blocks.Find(block);
                    if (hash is null) Array.Clear(buffer, index + (int)(position - offset), n);
                    else Buffer.BlockCopy(Block(block, hash.Value), within, buffer, index + (int)(position - offset), n);
                    position += n;
                }
            }

            private byte[] Block(long block, BlockHash hash)
            {
                for (int i = 0; i < CachedBlocks; i++)
                    if (_cachedIndex[i] == block) return _cached[i];
                int slot = _next;
                _next = (_next + 1) % CachedBlocks;
                _cachedIndex[slot] = -1;
                var data = _cached[slot];
                int length = _reader.Read(hash, data);
                // A block shorter than the block size (the disk's last one) reads as zeros past its end.
                if (length < data.Length) Array.Clear(data, length, data.Length - length);
                _cachedIndex[slot] = block;
                return data;
            }

            public void Dispose() => _reader.Dispose();
        }
    }
}
