using System;
using System.Collections.Generic;
using System.IO;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>A block in the repository is missing or does not match its hash.</summary>
    public sealed class BlockDamagedException : IOException
    {
        public BlockDamagedException(string hash, string message) : base(message)
        {
            Hash = hash;
        }

        public string Hash { get; }
    }

    /// <summary>
    /// Reads blocks back from packs and checks each against its hash before handing it out.
    /// One reader per thread: it keeps its own open pack readers, so a restore reading a pack block by block opens
    /// it once, not once per block.
    /// </summary>
    internal sealed class BlockReader : IDisposable
    {
        private const int MaxOpenPacks = 8;
        private readonly BlockStore _store;
        private readonly RepositoryLayout _layout;
        private readonly Dictionary<string, IObjectReader> _open = new Dictionary<string, IObjectReader>(StringComparer.Ordinal);
        private readonly LinkedList<string> _lru = new LinkedList<string>();
        private readonly BlobDecoder _decoder;
        private byte[] _stored = new byte[0];

        public BlockReader(BlockStore store, RepositoryLayout layout)
        {
            _store = store;
            _layout = layout;
            _decoder = new BlobDecoder(layout);
        }

        /// <summary>Reads a block into <paramref name="destination"/> and returns its length.</summary>
        public int Read(BlockHash hash, byte[] destination)
        {
            if (!_store.TryGetLocation(hash, out var location))
                throw new BlockDamagedException(hash.ToString(), $"Block {hash} is not in the repository's index (its pack is missing).");
            if (destination.Length < location.RawLength)
                throw new BlockDamagedException(hash.ToString(), $"Block {hash} claims {location.RawLength} bytes, more than a block holds.");
            var pack = Open(location.PackId, hash);
            if (_stored.Length < location.StoredLength) _stored = new byte[location.StoredLength];
            if (pack.ReadAt(location.Offset, _stored, 0, location.StoredLength) != location.StoredLength)
                throw new BlockDamagedException(hash.ToString(), $"Block {hash}: pack {location.PackId} ends early.");
            if (_decoder.TryDecode(hash, _stored, location.StoredLength, location.RawLength, location.Compression, destination, out int length) is { } problem)
                throw new BlockDamagedException(hash.ToString(), $"Block {hash} in pack {location.PackId} {problem}.");
            return length;
        }

        private IObjectReader Open(string packId, BlockHash hash)
        {
            if (_open.TryGetValue(packId, out var s))
            {
                _lru.Remove(packId);
                _lru.AddFirst(packId);
                return s;
            }
            try
            {
                s = _layout.Backend.OpenRead(_layout.PackName(packId));
            }
            catch (ObjectNotFoundException)
            {
                throw new BlockDamagedException(hash.ToString(), $"Block {hash}: pack {packId} is missing.");
            }
            _open[packId] = s;
            _lru.AddFirst(packId);
            if (_lru.Count > MaxOpenPacks)
            {
                var last = _lru.Last!.Value;
                _lru.RemoveLast();
                _open[last].Dispose();
                _open.Remove(last);
            }
            return s;
        }

        public void Dispose()
        {
            foreach (var s in _open.Values) s.Dispose();
            _open.Clear();
            _decoder.Dispose();
        }
    }
}
