using System;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;
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
        private readonly HashAlgorithm _sha;
        private readonly BlockCodec _codec = new BlockCodec();
        private byte[] _stored = new byte[0];
        private byte[] _opened = new byte[0]; // an encrypted blob's plain (compressed) bytes

        public BlockReader(BlockStore store, RepositoryLayout layout)
        {
            _store = store;
            _layout = layout;
            _sha = layout.NewBlockHasher();
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
            int storedLength = location.StoredLength;
            if (_layout.Key is { } key)
            {
                if (_opened.Length < storedLength) _opened = new byte[storedLength];
                try
                {
                    storedLength = key.OpenBlob(hash, _stored, storedLength, _opened);
                }
                catch (CryptographicException)
                {
                    throw new BlockDamagedException(hash.ToString(), $"Block {hash} in pack {location.PackId} does not decrypt with the repository's key (damaged or altered).");
                }
                (_stored, _opened) = (_opened, _stored);
            }
            int length;
            if (location.Compression == BlobCompression.Zstd)
            {
                try
                {
                    length = _codec.Decompress(_stored, storedLength, destination, location.RawLength);
                }
                catch (InvalidDataException e)
                {
                    throw new BlockDamagedException(hash.ToString(), $"Block {hash} in pack {location.PackId} does not decompress: {e.Message}");
                }
            }
            else
            {
                Buffer.BlockCopy(_stored, 0, destination, 0, storedLength);
                length = storedLength;
            }
            if (length != location.RawLength || BlockHash.Compute(_sha, destination, 0, length) != hash)
                throw new BlockDamagedException(hash.ToString(), $"Block {hash} in pack {location.PackId} does not match its hash.");
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
            _sha.Dispose();
            _codec.Dispose();
        }
    }
}
