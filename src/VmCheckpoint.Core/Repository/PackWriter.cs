using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Security.Cryptography;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Appends blobs to a new pack that nobody sees yet; <see cref="Finish"/> writes the trailer and commits it, whole
    /// and durable, under its name. A pack never finished leaves nothing visible to readers. A writer that failed once
    /// stays broken: how much of the failed write reached the pack is unknown, so no entry may follow it.
    /// Not thread-safe.
    /// </summary>
    internal sealed class PackWriter : IDisposable
    {
        private readonly IObjectWriter _writer;
        private readonly List<PackEntry> _entries = new List<PackEntry>();
        private readonly IncrementalHash _checksum = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private bool _broken;
        private bool _finished;

        public PackWriter(RepositoryLayout layout)
        {
            Id = Hex.Random(16);
            _writer = layout.Backend.OpenWrite(layout.PackName(Id));
            var header = new byte[PackFormat.HeaderSize];
            PackFormat.WriteHeader(header, PackFormat.FlagChecksum);
            try
            {
                Write(header, header.Length);
                _checksum.AppendData(header);
            }
            catch
            {
                _writer.Dispose();
                _checksum.Dispose();
                throw;
            }
        }

        public string Id { get; }
        public long Length => _writer.Length;
        public int Count => _entries.Count;

        /// <summary>
        /// Appends a blob. <paramref name="storedDigest"/> is the SHA-256 of its stored bytes (<see cref="PackFormat.StoredDigest"/>),
        /// computed by the caller outside any lock: the pack checksum is made of these, so that writers hash in parallel.
        /// </summary>
        public BlobLocation Add(BlockHash hash, byte[] stored, int storedLength, int rawLength, BlobCompression compression, byte[] storedDigest)
        {
            long offset = _writer.Length;
            Write(stored, storedLength);
            _checksum.AppendData(storedDigest);
            _entries.Add(new PackEntry(hash, offset, storedLength, rawLength, compression));
            return new BlobLocation(Id, offset, storedLength, rawLength, compression);
        }

        /// <summary>Seals the pack; afterwards it is durable under its final name.</summary>
        public IReadOnlyList<PackEntry> Finish()
        {
            // The checksum of the header and of every blob's bytes, then the trailer, which has its own.
            var checksum = new byte[PackFormat.ChecksumSize];
            _checksum.GetHashAndReset().CopyTo(checksum, 0);
            PackFormat.ChecksumMagic.CopyTo(checksum, 32);
            Write(checksum, checksum.Length);
            var table = new byte[_entries.Count * PackFormat.EntrySize];
            for (int i = 0; i < _entries.Count; i++) PackFormat.WriteEntry(table, i * PackFormat.EntrySize, _entries[i]);
            var footer = new byte[PackFormat.FooterSize];
            using (var sha = SHA256.Create()) sha.ComputeHash(table).CopyTo(footer, 0);
            BinaryPrimitives.WriteInt32LittleEndian(footer.AsSpan(32), _entries.Count);
            PackFormat.TrailerMagic.CopyTo(footer, 36);
            Write(table, table.Length);
            Write(footer, footer.Length);
            CheckNotBroken();
            try
            {
                _writer.Commit();
            }
            catch
            {
                _broken = true;
                throw;
            }
            _finished = true;
            return _entries;
        }

        private void Write(byte[] buffer, int count)
        {
            CheckNotBroken();
            try
            {
                _writer.Write(buffer, 0, count);
            }
            catch
            {
                _broken = true;
                throw;
            }
        }

        private void CheckNotBroken()
        {
            if (_broken) throw new InvalidOperationException($"Pack {Id} failed to write earlier and is discarded.");
        }

        public void Dispose()
        {
            _checksum.Dispose();
            if (_finished) return;
            _writer.Dispose(); // uncommitted: nothing of it stays
        }
    }
}
