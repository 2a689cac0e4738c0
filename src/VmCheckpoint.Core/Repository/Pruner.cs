using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>What reclaiming unused blocks did.</summary>
    public sealed class ReclaimResult
    {
        /// <summary>False when another process held the repository and reclaiming was left for later.</summary>
        public bool Completed { get; set; }
        public string? Reason { get; set; }
        public int PacksDeleted { get; set; }
        public int PacksRewritten { get; set; }
        public int BlocksRemoved { get; set; }
        public long BytesReclaimed { get; set; }
        /// <summary>Packs with no (or few) used blocks left alone because S3 Object Lock still keeps them.</summary>
        public int PacksRetained { get; set; }
    }

    /// <summary>
    /// Reclaims the space of blocks no checkpoint uses, under the exclusive lock so that no checkpoint is being
    /// taken meanwhile (a running checkpoint may rely on blocks that only the index lists). Order of work, so a
    /// crash at any instant loses nothing: write new packs with the live blocks of mostly-empty packs, then one
    /// index of everything that stays, then delete the old index files, then the old packs.
    /// </summary>
    internal sealed class Pruner
    {
        /// <summary>A pack is rewritten when at least this share of its bytes is unused.</summary>
        private const double RewriteThreshold = 0.25;
        /// <summary>What writes that never committed left (temporary files) goes once this old: no write takes a day.</summary>
        private static readonly TimeSpan AbandonedWriteAge = TimeSpan.FromHours(24);

        private readonly CheckpointRepository _repository;

        public Pruner(CheckpointRepository repository)
        {
            _repository = repository;
        }

        public ReclaimResult Reclaim(TimeSpan lockWait, CancellationToken cancellationToken)
        {
            RepositoryLock exclusive;
            try
            {
                exclusive = _repository.Lock(LockKind.Exclusive, lockWait, cancellationToken);
            }
            catch (RepositoryLockedException e)
            {
                return new ReclaimResult { Completed = false, Reason = e.Message + " Unused blocks will be reclaimed by a later removal." };
            }
            using (exclusive)
            {
                return exclusive.Run(cancellationToken, ReclaimLocked);
            }
        }

        private ReclaimResult ReclaimLocked(CancellationToken cancellationToken)
        {
            var layout = _repository.Layout;
            var backend = layout.Backend;
            var result = new ReclaimResult { Completed = true };
            RepositoryLock.RemoveStale(layout);
            backend.RemoveAbandoned(AbandonedWriteAge);

            // Every block any checkpoint uses. One unreadable manifest stops everything: its blocks are unknown.
            var used = new HashSet<BlockHash>();
            foreach (var file in _repository.ListCheckpoints())
            {
                cancellationToken.ThrowIfCancellationRequested();
                CheckpointManifest manifest;
                try
                {
                    manifest = _repository.ReadCheckpoint(file);
                }
                catch (KeyNotFoundException)
                {
                    continue;
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException)
                {
                    throw new InvalidDataException($"Blocks are not reclaimed while checkpoint {file.Id} cannot be read ({e.Message}); remove or repair it first.");
                }
                foreach (var disk in manifest.AllBlockLists)
                    for (int i = 0; i < disk.Blocks.Count; i++) used.Add(disk.Blocks.HashAt(i));
            }

            using var store = _repository.OpenStore(cancellationToken);
            var oldIndexes = store.IndexFiles.ToList();
            var packs = store.PackContents.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
            var keep = new Dictionary<string, IReadOnlyList<PackEntry>>(StringComparer.Ordinal);
            var delete = new List<string>();
            var rewrite = new List<string>();
            var seen = new HashSet<BlockHash>();
            foreach (var pack in packs)
            {
                long total = pack.Value.Sum(e => (long)e.StoredLength);
                // A blob is live once: duplicates (two runs stored the same block) count as unused.
                long live = pack.Value.Where(e => used.Contains(e.Hash) && seen.Add(e.Hash)).Sum(e => (long)e.StoredLength);
                if (live == 0) delete.Add(pack.Key);
                else if (total - live >= RewriteThreshold * total) rewrite.Add(pack.Key);
                else keep[pack.Key] = pack.Value;
            }

            // Never try to delete what the store still keeps (Object Lock): such a pack stays whole, as it is, and
            // listed, until a reclaim after its retention ends.
            if (_repository.Config.RetainDays > 0)
            {
                var now = DateTime.UtcNow;
                foreach (var id in delete.Concat(rewrite).ToList())
                {
                    if (backend.GetInfo(layout.PackName(id)) is { } info && info.IsRetained(now))
                    {
                        delete.Remove(id);
                        rewrite.Remove(id);
                        keep[id] = packs[id];
                        result.PacksRetained++;
                    }
                }
            }

            // Copy live blocks of mostly-empty packs into new packs (read back and checked like any block).
            if (rewrite.Count > 0)
            {
                var target = new BlockStore(layout);
                using (target)
                using (var reader = new BlockReader(store, layout))
                using (var compressor = new ZstdSharp.Compressor(1))
                {
                    var buffer = new byte[RepositoryConfig.MaxBlockSize];
                    var compressed = new byte[ZstdSharp.Compressor.GetCompressBound(RepositoryConfig.MaxBlockSize)];
                    var copied = new HashSet<BlockHash>(keep.Values.SelectMany(v => v).Select(e => e.Hash));
                    foreach (var id in rewrite)
                    {
                        foreach (var e in packs[id])
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            if (!used.Contains(e.Hash) || !copied.Add(e.Hash)) continue;
                            int n = reader.Read(e.Hash, buffer);
                            int c = compressor.Wrap(new ReadOnlySpan<byte>(buffer, 0, n), compressed);
                            if (c < n) target.Add(e.Hash, compressed, c, n, BlobCompression.Zstd);
                            else target.Add(e.Hash, buffer, n, n, BlobCompression.None);
                        }
                    }
                    target.Flush();
                    foreach (var p in target.PackContents) keep[p.Key] = p.Value;
                    oldIndexes.AddRange(target.IndexFiles); // superseded by the consolidated index below
                }
            }

            cancellationToken.ThrowIfCancellationRequested();
            var consolidated = store.WriteIndexFile(keep);
            foreach (var index in oldIndexes.Where(i => !string.Equals(i, consolidated, StringComparison.Ordinal)))
                TryDelete(backend, index); // one left behind only duplicates what the consolidated index says
            foreach (var id in delete.Concat(rewrite))
            {
                // A lock lost (the token) means a checkpoint may be running now, and may rely on this pack's blocks.
                cancellationToken.ThrowIfCancellationRequested();
                var name = layout.PackName(id);
                long length = backend.GetInfo(name)?.Length ?? 0;
                backend.Delete(name);
                result.BytesReclaimed += length;
                result.BlocksRemoved += packs[id].Count(e => !used.Contains(e.Hash));
                if (rewrite.Contains(id)) result.PacksRewritten++; else result.PacksDeleted++;
            }
            foreach (var p in keep.Keys.Where(k => !packs.ContainsKey(k)))
                result.BytesReclaimed -= backend.GetInfo(layout.PackName(p))?.Length ?? 0;
            return result;
        }

        private static void TryDelete(IRepositoryBackend backend, string name)
        {
            try { backend.Delete(name); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
