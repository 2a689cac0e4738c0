using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>What repairing the index found and did.</summary>
    public sealed class RepairResult
    {
        public string Repository { get; set; } = "";
        /// <summary>True when new index files were written; false when nothing needed it, or the caller declined (-WhatIf).</summary>
        public bool Applied { get; set; }
        /// <summary>True when the index needs the repair (what <see cref="Applied"/> did, or would do).</summary>
        public bool Needed { get; set; }
        public int IndexFilesRead { get; set; }
        /// <summary>Index files that failed their checksum (replaced when applied).</summary>
        public List<string> DamagedIndexFiles { get; set; } = new List<string>();
        /// <summary>Intact index files that list a pack otherwise than its own trailer.</summary>
        public List<string> MismatchedIndexFiles { get; set; } = new List<string>();
        public int PacksRead { get; set; }
        /// <summary>Packs no intact index file named, found from their own trailers.</summary>
        public int PacksIndexed { get; set; }
        /// <summary>Packs index files named that are gone.</summary>
        public int PacksGone { get; set; }
        /// <summary>Packs whose header, trailer or layout is damaged, and what could be kept of each. None is ever deleted.</summary>
        public List<string> DamagedPacks { get; set; } = new List<string>();
        /// <summary>Index files written (one, holding every pack, when applied).</summary>
        public int IndexesRebuilt { get; set; }
        /// <summary>Old index files removed once the new one was written.</summary>
        public int IndexFilesRemoved { get; set; }
        /// <summary>Blobs the new index lists.</summary>
        public int BlobsIndexed { get; set; }
        /// <summary>Blocks checkpoints use that no pack holds, as far as the packs tell (the index cannot bring them back).</summary>
        public int MissingBlocks { get; set; }
        /// <summary>Checkpoints that use at least one missing block.</summary>
        public List<string> DamagedCheckpoints { get; set; } = new List<string>();
        /// <summary>What was done, or would be, in sentences.</summary>
        public List<string> Actions { get; set; } = new List<string>();

        public override string ToString() => Actions.Count == 0 ? "The index matches the packs." : string.Join(" ", Actions);
    }

    /// <summary>
    /// Rebuilds the index from the packs' own trailers (as restic's <c>repair index</c>): index files that are damaged,
    /// lost, disagree with the packs or name packs that are gone are replaced by one written from what the packs say.
    /// A pack whose trailer is damaged keeps the entries an intact index gives it, for the blobs that read back right.
    /// Packs are only read: nothing here deletes one. The caller holds the exclusive lock.
    /// </summary>
    internal sealed class IndexRepair
    {
        private readonly CheckpointRepository _repository;
        private readonly Action<string, int>? _progress;

        public IndexRepair(CheckpointRepository repository, Action<string, int>? progress = null)
        {
            _repository = repository;
            _progress = progress;
        }

        /// <summary>
        /// Finds what the index lacks, asks <paramref name="confirm"/> (given the plan) and, if it agrees, writes the new
        /// index file and then removes the old ones: a crash in between leaves both, which only repeat each other.
        /// </summary>
        public RepairResult Run(Func<RepairResult, bool>? confirm, CancellationToken cancellationToken)
        {
            var layout = _repository.Layout;
            var backend = layout.Backend;
            var result = new RepairResult { Repository = _repository.Path };

            // What the index files say, file by file.
            var views = new List<(string Name, Dictionary<string, List<PackEntry>> Packs)>();
            var oldIndexFiles = new List<string>();
            foreach (var index in backend.List(RepositoryLayout.IndexPrefix).Where(o => o.Name.EndsWith(RepositoryLayout.IndexSuffix, StringComparison.Ordinal)))
            {
                cancellationToken.ThrowIfCancellationRequested();
                oldIndexFiles.Add(index.Name);
                result.IndexFilesRead++;
                try
                {
                    views.Add((index.Name, layout.ReadIndex(index.Name)));
                }
                catch (InvalidDataException)
                {
                    result.DamagedIndexFiles.Add(index.Name);
                }
                catch (ObjectNotFoundException)
                {
                    oldIndexFiles.Remove(index.Name);
                    result.IndexFilesRead--;
                }
            }

            // What the packs say of themselves.
            var packIds = backend.List(RepositoryLayout.PacksPrefix).Select(o => o.Name)
                .Where(n => n.EndsWith(RepositoryLayout.PackSuffix, StringComparison.Ordinal))
                .Select(RepositoryLayout.IdFromName).OrderBy(id => id, StringComparer.Ordinal).ToList();
            var rebuilt = new Dictionary<string, IReadOnlyList<PackEntry>>(StringComparer.Ordinal);
            using (var checker = new PackChecker(layout))
            {
                for (int n = 0; n < packIds.Count; n++)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    string id = packIds[n];
                    _progress?.Invoke($"Pack {n + 1} of {packIds.Count}", 100 * n / Math.Max(1, packIds.Count));
                    PackCheckResult pack;
                    try
                    {
                        pack = checker.Check(id, readAll: false, null, null, cancellationToken);
                    }
                    catch (ObjectNotFoundException)
                    {
                        continue;
                    }
                    result.PacksRead++;
                    if (pack.Entries != null)
                    {
                        rebuilt[id] = pack.Entries;
                        if (pack.Damaged) result.DamagedPacks.Add($"{pack.Name}: {pack.Describe()}; its trailer is intact, so every blob in it stays indexed.");
                        continue;
                    }
                    // The trailer is damaged: keep what an intact index said of the pack, blob by blob, where the blob reads back right.
                    var known = views.Select(v => v.Packs.TryGetValue(id, out var e) ? e : null).FirstOrDefault(e => e != null);
                    if (known is null)
                    {
                        result.DamagedPacks.Add($"{pack.Name}: {pack.Describe()}; no index file lists it, so its blobs cannot be found.");
                        continue;
                    }
                    var reread = checker.Check(id, readAll: false, null, known, cancellationToken);
                    var good = reread.Blobs.Where(b => b.Problem is null).Select(b => b.Entry).ToList();
                    if (good.Count > 0) rebuilt[id] = good;
                    result.DamagedPacks.Add($"{pack.Name}: {pack.Describe()}; {good.Count} of {known.Count} blobs an index file lists read back right and stay indexed.");
                }
            }

            // What the index files get wrong.
            var stored = new HashSet<string>(packIds, StringComparer.Ordinal);
            var named = new HashSet<string>(StringComparer.Ordinal);
            var gone = new HashSet<string>(StringComparer.Ordinal);
            var digests = rebuilt.ToDictionary(p => p.Key, p => PackFormat.Digest(p.Value), StringComparer.Ordinal);
            foreach (var (name, packs) in views)
            {
                bool mismatched = false;
                foreach (var p in packs)
                {
                    named.Add(p.Key);
                    if (!stored.Contains(p.Key)) gone.Add(p.Key);
                    else if (!digests.TryGetValue(p.Key, out var digest) || !PackFormat.Digest(p.Value).AsSpan().SequenceEqual(digest)) mismatched = true;
                }
                if (mismatched) result.MismatchedIndexFiles.Add(name);
            }
            result.PacksIndexed = rebuilt.Keys.Count(id => !named.Contains(id));
            result.PacksGone = gone.Count;
            result.BlobsIndexed = rebuilt.Values.Sum(v => v.Count);
            result.Needed = result.DamagedIndexFiles.Count > 0 || result.MismatchedIndexFiles.Count > 0 || result.PacksIndexed > 0 || result.PacksGone > 0;
            if (result.DamagedIndexFiles.Count > 0) result.Actions.Add($"{result.DamagedIndexFiles.Count} damaged index file(s) replaced.");
            if (result.MismatchedIndexFiles.Count > 0) result.Actions.Add($"{result.MismatchedIndexFiles.Count} index file(s) that disagree with the packs' trailers replaced.");
            if (result.PacksIndexed > 0) result.Actions.Add($"{result.PacksIndexed} pack(s) no index file listed indexed from their trailers.");
            if (result.PacksGone > 0) result.Actions.Add($"{result.PacksGone} pack(s) that are gone dropped from the index.");
            if (result.Needed) result.Actions.Add($"{oldIndexFiles.Count} index file(s) replaced by one listing {rebuilt.Count} pack(s), {result.BlobsIndexed} blob(s).");
            if (result.DamagedPacks.Count > 0) result.Actions.Add($"{result.DamagedPacks.Count} damaged pack(s) kept as they are (a pack is never deleted here).");

            CountMissingBlocks(rebuilt, result, cancellationToken);

            if (!result.Needed || (confirm != null && !confirm(result))) return result;
            cancellationToken.ThrowIfCancellationRequested();
            string written = layout.IndexName(Hex.Random(16));
            layout.WriteIndex(written, rebuilt);
            result.IndexesRebuilt = 1;
            result.Applied = true;
            foreach (var old in oldIndexFiles)
            {
                try
                {
                    backend.Delete(old);
                    result.IndexFilesRemoved++;
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    // Left behind, it repeats the new index (or, damaged, is skipped and reported again).
                    result.Actions.Add($"{backend.Locate(old)} could not be removed: {e.Message}");
                }
            }
            return result;
        }

        /// <summary>Blocks that checkpoints use and no pack holds: what the repair cannot bring back, said before anyone relies on it.</summary>
        private void CountMissingBlocks(Dictionary<string, IReadOnlyList<PackEntry>> rebuilt, RepairResult result, CancellationToken cancellationToken)
        {
            var present = new HashSet<BlockHash>(rebuilt.Values.SelectMany(v => v).Select(e => e.Hash));
            var missing = new HashSet<BlockHash>();
            foreach (var file in _repository.ListCheckpoints())
            {
                cancellationToken.ThrowIfCancellationRequested();
                CheckpointManifest manifest;
                try
                {
                    manifest = _repository.ReadCheckpoint(file);
                }
                catch (Exception e) when (e is InvalidDataException || e is KeyNotFoundException)
                {
                    continue; // Test-VmCheckpoint reports a damaged manifest; the index has nothing to do with it
                }
                bool damaged = false;
                foreach (var disk in manifest.AllBlockLists)
                {
                    for (int i = 0; i < disk.Blocks.Count; i++)
                    {
                        var hash = disk.Blocks.HashAt(i);
                        if (present.Contains(hash)) continue;
                        missing.Add(hash);
                        damaged = true;
                    }
                }
                if (damaged) result.DamagedCheckpoints.Add(file.Id);
            }
            result.MissingBlocks = missing.Count;
            if (missing.Count > 0)
                result.Actions.Add($"{missing.Count} block(s) that {result.DamagedCheckpoints.Count} checkpoint(s) use are in no readable pack: the index cannot bring them back.");
        }
    }
}
