using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// The content-addressed store of blocks: which blob lives where (loaded from the index files and, for
    /// packs an interrupted run left without an index, from the packs' own trailers), and new blobs appended
    /// to packs. It reaches the repository through object names only (<see cref="RepositoryLayout"/>).
    /// Lookups and <see cref="Add"/> are thread-safe.
    /// </summary>
    internal sealed class BlockStore : IDisposable
    {
        public const long TargetPackSize = 32L << 20;
        private const int PacksPerIndexFile = 8;

        private readonly RepositoryLayout _layout;
        private readonly object _gate = new object();
        private readonly Dictionary<BlockHash, BlobLocation> _blobs = new Dictionary<BlockHash, BlobLocation>();
        private readonly HashSet<BlockHash> _pending = new HashSet<BlockHash>();
        private readonly Dictionary<string, IReadOnlyList<PackEntry>> _unindexed = new Dictionary<string, IReadOnlyList<PackEntry>>(StringComparer.Ordinal);
        private readonly List<string> _indexFiles = new List<string>();
        private PackWriter? _writer;

        public BlockStore(RepositoryLayout layout)
        {
            _layout = layout;
        }

        public int Count { get { lock (_gate) return _blobs.Count; } }
        /// <summary>The names of the index objects loaded or written by this store.</summary>
        public IReadOnlyList<string> IndexFiles => _indexFiles;

        /// <summary>Index files <see cref="Load"/> skipped as damaged, and why (verification reports them; repair replaces them).</summary>
        public Dictionary<string, string> DamagedIndexFiles { get; } = new Dictionary<string, string>(StringComparer.Ordinal);

        /// <summary>Packs no intact index file names, whose blobs <see cref="Load"/> found from their trailers.</summary>
        public HashSet<string> UnindexedPacks { get; } = new HashSet<string>(StringComparer.Ordinal);

        /// <summary>Packs intact index files name that are gone (reclaimed, the index files left by an interrupted reclaim).</summary>
        public HashSet<string> IndexedPacksGone { get; } = new HashSet<string>(StringComparer.Ordinal);

        /// <summary>Packs and their blobs as the store knows them (after <see cref="Load"/>).</summary>
        public Dictionary<string, List<PackEntry>> PackContents { get; } = new Dictionary<string, List<PackEntry>>(StringComparer.Ordinal);

        public void Load(CancellationToken cancellationToken)
        {
            var backend = _layout.Backend;
            foreach (var index in backend.List(RepositoryLayout.IndexPrefix))
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (!index.Name.EndsWith(RepositoryLayout.IndexSuffix, StringComparison.Ordinal)) continue;
                Dictionary<string, List<PackEntry>> packs;
                try
                {
                    packs = _layout.ReadIndex(index.Name);
                }
                catch (InvalidDataException e)
                {
                    DamagedIndexFiles[index.Name] = e.Message;
                    continue; // A damaged index only costs speed: the packs' trailers are read below.
                }
                catch (ObjectNotFoundException)
                {
                    continue; // Consolidated away by a concurrent prune.
                }
                _indexFiles.Add(index.Name);
                foreach (var p in packs)
                {
                    if (!PackContents.ContainsKey(p.Key)) PackContents[p.Key] = p.Value;
                }
            }

            var packsStored = ListPacks().ToDictionary(RepositoryLayout.IdFromName, StringComparer.Ordinal);
            foreach (var id in PackContents.Keys.ToList())
            {
                if (packsStored.ContainsKey(id)) continue;
                PackContents.Remove(id); // indexed, but pruned since
                IndexedPacksGone.Add(id);
            }
            foreach (var pack in packsStored)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (PackContents.ContainsKey(pack.Key)) continue;
                UnindexedPacks.Add(pack.Key);
                try
                {
                    using (var reader = backend.OpenRead(pack.Value))
                        PackContents[pack.Key] = PackFormat.ReadTrailer(reader, backend.Locate(pack.Value));
                }
                catch (InvalidDataException)
                {
                    // A damaged pack: its blobs are unknown, so they will be stored again; the checker reports it.
                }
                catch (ObjectNotFoundException)
                {
                }
            }
            foreach (var p in PackContents)
            {
                foreach (var e in p.Value)
                    _blobs[e.Hash] = new BlobLocation(p.Key, e.Offset, e.StoredLength, e.RawLength, e.Compression);
            }
        }

        /// <summary>The names of the packs in the repository (a listing that fails throws: it is never "no packs").</summary>
        public IEnumerable<string> ListPacks()
        {
            return _layout.Backend.List(RepositoryLayout.PacksPrefix).Select(o => o.Name)
                .Where(n => n.EndsWith(RepositoryLayout.PackSuffix, StringComparison.Ordinal)).ToList();
        }

        public bool Contains(BlockHash hash)
        {
            lock (_gate) return _blobs.ContainsKey(hash);
        }

        public bool TryGetLocation(BlockHash hash, out BlobLocation location)
        {
            lock (_gate) return _blobs.TryGetValue(hash, out location);
        }

        /// <summary>
        /// Claims a hash for storing: true when neither the repository nor another worker of this run has it,
        /// in which case the caller must <see cref="Add"/> it (or <see cref="Release"/> it on failure).
        /// </summary>
        public bool TryClaim(BlockHash hash)
        {
            lock (_gate) return !_blobs.ContainsKey(hash) && _pending.Add(hash);
        }

        public void Release(BlockHash hash)
        {
            lock (_gate) _pending.Remove(hash);
        }

        /// <summary>Appends an already compressed blob; returns the bytes it took in the pack.</summary>
        /// <remarks>
        /// A full pack is sealed by the worker that filled it, outside the lock: sealing waits for the backend to make it
        /// durable (an fsync, the last parts of an S3 upload), and the other workers go on filling the next pack meanwhile.
        /// </remarks>
        public long Add(BlockHash hash, byte[] stored, int storedLength, int rawLength, BlobCompression compression)
        {
            if (_layout.Key is { } key)
            {
                // Encrypted outside the lock, as the digest: every worker seals its own blob.
                var sealedBlob = SealBuffer(storedLength + Encryption.Aes256Gcm.Overhead);
                storedLength = key.SealBlob(hash, stored, storedLength, sealedBlob);
                stored = sealedBlob;
            }
            var digest = PackFormat.StoredDigest(stored, storedLength); // outside the lock: every worker hashes its own
            PackWriter? full = null;
            lock (_gate)
            {
                _writer ??= new PackWriter(_layout);
                BlobLocation location;
                try
                {
                    location = _writer.Add(hash, stored, storedLength, rawLength, compression, digest);
                }
                catch
                {
                    DiscardWriterLocked(); // a pack that failed a write is never sealed (PackWriter)
                    throw;
                }
                _blobs[hash] = location;
                _pending.Remove(hash);
                if (_writer.Length >= TargetPackSize)
                {
                    full = _writer;
                    _writer = null;
                    _sealing++;
                }
            }
            if (full != null) SealOutside(full);
            return storedLength;
        }

        [ThreadStatic] private static byte[]? _sealBuffer;

        private static byte[] SealBuffer(int length)
        {
            if (_sealBuffer is null || _sealBuffer.Length < length) _sealBuffer = new byte[length];
            return _sealBuffer;
        }

        /// <summary>A block's id function for this repository (<see cref="RepositoryLayout.NewBlockHasher"/>).</summary>
        public System.Security.Cryptography.HashAlgorithm NewBlockHasher() => _layout.NewBlockHasher();

        /// <summary>Seals the open pack, waits for packs other workers are sealing, and indexes every sealed pack not yet in an index file.</summary>
        public void Flush()
        {
            lock (_gate)
            {
                SealPackLocked();
                while (_sealing > 0) Monitor.Wait(_gate);
                WriteIndexLocked();
            }
        }

        /// <summary>Packs being sealed outside the lock (<see cref="Add"/>); <see cref="Flush"/> waits for them.</summary>
        private int _sealing;

        private void SealOutside(PackWriter writer)
        {
            IReadOnlyList<PackEntry>? entries = null;
            try
            {
                entries = writer.Finish();
            }
            finally
            {
                writer.Dispose();
                lock (_gate)
                {
                    if (entries is null)
                    {
                        ForgetBlobsOf(writer.Id); // never visible: its blobs are stored again by whoever needs them
                    }
                    else
                    {
                        _unindexed[writer.Id] = entries;
                        PackContents[writer.Id] = entries.ToList();
                    }
                    _sealing--;
                    Monitor.PulseAll(_gate);
                }
            }
            lock (_gate)
            {
                if (_unindexed.Count >= PacksPerIndexFile) WriteIndexLocked();
            }
        }

        /// <summary>Writes one index file covering the given packs (used by prune to consolidate); returns its name.</summary>
        public string WriteIndexFile(IReadOnlyDictionary<string, IReadOnlyList<PackEntry>> packs)
        {
            var name = _layout.IndexName(Hex.Random(16));
            _layout.WriteIndex(name, packs);
            return name;
        }

        private void SealPackLocked()
        {
            if (_writer is null) return;
            var writer = _writer;
            _writer = null;
            try
            {
                if (writer.Count == 0) return;
                var entries = writer.Finish();
                _unindexed[writer.Id] = entries;
                PackContents[writer.Id] = entries.ToList();
            }
            catch
            {
                ForgetBlobsOf(writer.Id);
                throw;
            }
            finally
            {
                writer.Dispose();
            }
            if (_unindexed.Count >= PacksPerIndexFile) WriteIndexLocked();
        }

        private void DiscardWriterLocked()
        {
            if (_writer is null) return;
            ForgetBlobsOf(_writer.Id);
            _writer.Dispose();
            _writer = null;
        }

        /// <summary>A pack that never became visible: forget its blobs so that they are stored again.</summary>
        private void ForgetBlobsOf(string packId)
        {
            foreach (var e in _blobs.Where(b => b.Value.PackId == packId).Select(b => b.Key).ToList()) _blobs.Remove(e);
        }

        private void WriteIndexLocked()
        {
            if (_unindexed.Count == 0) return;
            _indexFiles.Add(WriteIndexFile(_unindexed));
            _unindexed.Clear();
        }

        public void Dispose()
        {
            lock (_gate)
            {
                _writer?.Dispose(); // an unfinished pack is discarded; its blobs were never referenced
                _writer = null;
            }
        }
    }
}
