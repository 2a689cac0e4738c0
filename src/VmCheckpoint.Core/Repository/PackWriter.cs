using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Appends blobs to a new pack under a temporary name; <see cref="Finish"/> writes the trailer, flushes
    /// and renames it into place. A pack that was never finished is only a temporary file: invisible to readers.
    /// Not thread-safe.
    /// </summary>
    internal sealed class PackWriter : IDisposable
    {
        private readonly string _finalPath;
        private readonly string _temporaryPath;
        private readonly FileStream _stream;
        private readonly List<PackEntry> _entries = new List<PackEntry>();
        private bool _finished;

        public PackWriter(RepositoryLayout layout)
        {
            Id = Hex.Random(16);
            _finalPath = layout.PackPath(Id);
            Directory.CreateDirectory(Path.GetDirectoryName(_finalPath)!);
            _temporaryPath = AtomicFile.TemporaryNameFor(_finalPath);
            _stream = new FileStream(_temporaryPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
            var header = new byte[PackFormat.HeaderSize];
            PackFormat.HeaderMagic.CopyTo(header, 0);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), PackFormat.Version);
            _stream.Write(header, 0, header.Length);
        }

        public string Id { get; }
        public long Length => _stream.Length;
        public int Count => _entries.Count;

        public BlobLocation Add(BlockHash hash, byte[] stored, int storedLength, int rawLength, BlobCompression compression)
        {
            long offset = _stream.Position;
            _stream.Write(stored, 0, storedLength);
            var entry = new PackEntry(hash, offset, storedLength, rawLength, compression);
            _entries.Add(entry);
            return new BlobLocation(Id, offset, storedLength, rawLength, compression);
        }

        /// <summary>Seals the pack; afterwards it is durable under its final name.</summary>
        public IReadOnlyList<PackEntry> Finish()
        {
            var table = new byte[_entries.Count * PackFormat.EntrySize];
            for (int i = 0; i < _entries.Count; i++) PackFormat.WriteEntry(table, i * PackFormat.EntrySize, _entries[i]);
            var footer = new byte[PackFormat.FooterSize];
            using (var sha = SHA256.Create()) sha.ComputeHash(table).CopyTo(footer, 0);
            BinaryPrimitives.WriteInt32LittleEndian(footer.AsSpan(32), _entries.Count);
            PackFormat.TrailerMagic.CopyTo(footer, 36);
            _stream.Write(table, 0, table.Length);
            _stream.Write(footer, 0, footer.Length);
            _stream.Flush(flushToDisk: true);
            _stream.Dispose();
            AtomicFile.Commit(_temporaryPath, _finalPath);
            _finished = true;
            return _entries;
        }

        public void Dispose()
        {
            if (_finished) return;
            _stream.Dispose();
            AtomicFile.TryDelete(_temporaryPath);
        }
    }
}
