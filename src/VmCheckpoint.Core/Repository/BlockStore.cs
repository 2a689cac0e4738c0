using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// The content-addressed store of blocks: which blob lives where (loaded from the index files and, for
    /// packs an interrupted run left without an index, from the packs' own trailers), and new blobs appended
    /// to packs. Lookups and <see cref="Add"/> are thread-safe.
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
        private readonly Dictionary<string, long> _packSizes = new Dictionary<string, long>(StringComparer.Ordinal);
        private PackWriter? _writer;

        public BlockStore(RepositoryLayout layout)
        {
            _layout = layout;
        }

        public int Count { get { lock (_gate) return _blobs.Count; } }
        public IReadOnlyList<string> IndexFiles => _indexFiles;

        /// <summary>Packs and their blobs as the store knows them (after <see cref="Load"/>).</summary>
        public Dictionary<string, List<PackEntry>> PackContents { get; } = new Dictionary<string, List<PackEntry>>(StringComparer.Ordinal);

        public void Load(CancellationToken cancellationToken)
        {
            foreach (var file in RepositoryLayout.ListFiles(_layout.IndexDirectory, "*.idx"))
            {
                cancellationToken.ThrowIfCancellationRequested();
                Dictionary<string, List<PackEntry>> packs;
                try
                {
                    packs = IndexFile.Parse(File.ReadAllBytes(file), file);
                }
                catch (InvalidDataException)
                {
                    continue; // A damaged index only costs speed: the packs' trailers are read below.
                }
                catch (FileNotFoundException)
                {
                    continue; // Consolidated away by a concurrent prune.
                }
                _indexFiles.Add(file);
                foreach (var p in packs)
                {
                    if (!PackContents.ContainsKey(p.Key)) PackContents[p.Key] = p.Value;
                }
            }

            var packsOnDisk = ListPackFiles().ToDictionary(p => RepositoryLayout.IdFromFileName(p), StringComparer.Ordinal);
            foreach (var id in PackContents.Keys.ToList())
            {
                if (!packsOnDisk.ContainsKey(id)) PackContents.Remove(id); // indexed, but pruned since
            }
            foreach (var pack in packsOnDisk)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (PackContents.ContainsKey(pack.Key)) continue;
                try
                {
                    using (var s = new FileStream(pack.Value, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                        PackContents[pack.Key] = PackFormat.ReadTrailer(s, pack.Value);
                }
                catch (InvalidDataException)
                {
                    // A damaged pack: its blobs are unknown, so they will be stored again; the checker reports it.
                }
                catch (FileNotFoundException)
                {
                }
            }
            foreach (var p in PackContents)
            {
                foreach (var e in p.Value)
                    _blobs[e.Hash] = new BlobLocation(p.Key, e.Offset, e.StoredLength, e.RawLength, e.Compression);
            }
        }

        public IEnumerable<string> ListPackFiles()
        {
            return RepositoryLayout.ListFiles(_layout.PacksDirectory, "*.pack", SearchOption.AllDirectories);
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
        public long Add(BlockHash hash, byte[] stored, int storedLength, int rawLength, BlobCompression compression)
        {
            lock (_gate)
            {
                _writer ??= new PackWriter(_layout);
                var location = _writer.Add(hash, stored, storedLength, rawLength, compression);
                _blobs[hash] = location;
                _pending.Remove(hash);
                if (_writer.Length >= TargetPackSize) SealPackLocked();
                return storedLength;
            }
        }

        /// <summary>Seals the open pack and indexes every sealed pack not yet in an index file.</summary>
        public void Flush()
        {
            lock (_gate)
            {
                SealPackLocked();
                WriteIndexLocked();
            }
        }

        /// <summary>Writes one index file covering the given packs (used by prune to consolidate).</summary>
        public string WriteIndexFile(IReadOnlyDictionary<string, IReadOnlyList<PackEntry>> packs)
        {
            Directory.CreateDirectory(_layout.IndexDirectory);
            var path = _layout.IndexPath(Hex.Random(16));
            AtomicFile.Write(path, IndexFile.Serialize(packs));
            return path;
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
                // The pack never reached its final name: forget its blobs so that they are stored again.
                foreach (var e in _blobs.Where(b => b.Value.PackId == writer.Id).Select(b => b.Key).ToList()) _blobs.Remove(e);
                throw;
            }
            finally
            {
                writer.Dispose();
            }
            if (_unindexed.Count >= PacksPerIndexFile) WriteIndexLocked();
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
