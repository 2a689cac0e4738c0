using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    public enum VerificationStatus
    {
        Healthy,
        Damaged,
    }

    /// <summary>The outcome of checking one checkpoint.</summary>
    public sealed class VerificationResult
    {
        public string Id { get; set; } = "";
        public string VmName { get; set; } = "";
        public DateTime Time { get; set; }
        /// <summary>Healthy, Damaged, ... as a name in every output and export.</summary>
        public string Status { get => State.ToString(); set => State = Reporting.EnumText.Parse<VerificationStatus>(value); }
        internal VerificationStatus State { get; set; }
        public bool DataRead { get; set; }
        public int BlocksChecked { get; set; }
        public int MissingBlocks { get; set; }
        public int CorruptBlocks { get; set; }
        /// <summary>Names of the disks that cannot be restored whole.</summary>
        public Reporting.TextList DamagedDisks { get; set; } = new Reporting.TextList();
        public Reporting.TextList Problems { get; set; } = new Reporting.TextList();
        public string Repository { get; set; } = "";
    }

    /// <summary>The kinds of object a repository is made of, as verification names them.</summary>
    public enum RepositoryObjectKind
    {
        Configuration,
        Index,
        Pack,
    }

    /// <summary>Damage found in an object of the repository other than a checkpoint's manifest.</summary>
    public sealed class RepositoryProblem
    {
        public string Kind { get => ObjectKind.ToString(); set => ObjectKind = Reporting.EnumText.Parse<RepositoryObjectKind>(value); }
        internal RepositoryObjectKind ObjectKind { get; set; }
        /// <summary>The object's name in the repository (<c>index/….idx</c>, <c>packs/ab/….pack</c>).</summary>
        public string Name { get; set; } = "";
        /// <summary>Where the object is, for people (a full path in a folder repository).</summary>
        public string Path { get; set; } = "";
        public string Message { get; set; } = "";

        public override string ToString() => $"{Kind} {Name}: {Message}";
    }

    /// <summary>The outcome of one verification: each checkpoint, and the repository's other objects.</summary>
    public sealed class VerificationReport
    {
        public string Repository { get; set; } = "";
        public bool DataRead { get; set; }
        /// <summary>True when every checkpoint was checked: then every index file, and with data read every pack, was too.</summary>
        public bool WholeRepository { get; set; }
        public List<VerificationResult> Checkpoints { get; } = new List<VerificationResult>();
        /// <summary>Damaged index files, packs and configuration (whether or not a checkpoint uses what they hold).</summary>
        public List<RepositoryProblem> Problems { get; } = new List<RepositoryProblem>();
        /// <summary>What is not damage but worth knowing (packs no index names, index entries of packs reclaimed since).</summary>
        public List<string> Notes { get; } = new List<string>();
        public int IndexFilesChecked { get; set; }
        public int PacksChecked { get; set; }
        public long BytesRead { get; set; }
        public bool Healthy => Problems.Count == 0 && Checkpoints.All(c => c.State == VerificationStatus.Healthy);
    }

    /// <summary>
    /// Checks checkpoints: each manifest against its checksum, each block against the index and the packs stored, and
    /// the index files against their checksums. With <c>readData</c> packs are read, each once from start to end
    /// (<see cref="PackChecker"/>): every pack and every byte of it when every checkpoint is checked, which also checks
    /// each index file against the packs' own trailers; for some checkpoints only, the blocks they use, in the order they
    /// lie in their packs, with those packs' headers and trailers.
    /// </summary>
    internal sealed class CheckpointVerifier
    {
        private readonly CheckpointRepository _repository;

        public CheckpointVerifier(CheckpointRepository repository)
        {
            _repository = repository;
        }

        public VerificationReport Verify(IReadOnlyCollection<CheckpointFile> files, bool readData, Action<string, int>? progress, CancellationToken cancellationToken)
        {
            var layout = _repository.Layout;
            var report = new VerificationReport { Repository = _repository.Path, DataRead = readData };
            CheckConfiguration(report);
            using var store = _repository.OpenStore(cancellationToken);
            var packsStored = new HashSet<string>(store.ListPacks().Select(RepositoryLayout.IdFromName), StringComparer.Ordinal);
            var selected = new HashSet<string>(files.Select(f => f.Name), StringComparer.Ordinal);
            report.WholeRepository = _repository.ListCheckpoints().All(f => selected.Contains(f.Name));
            foreach (var damaged in store.DamagedIndexFiles)
                report.Problems.Add(Problem(RepositoryObjectKind.Index, damaged.Key, damaged.Value + " Its packs are found from their own trailers; Repair-VmCheckpointRepository rewrites the index."));
            report.IndexFilesChecked = store.IndexFiles.Count + store.DamagedIndexFiles.Count;

            var verdicts = new Dictionary<BlockHash, string?>(); // null = good
            if (readData)
            {
                Dictionary<string, List<PackEntry>>? toRead = null;
                if (!report.WholeRepository) toRead = BlocksToRead(files, store, packsStored, cancellationToken);
                var trailers = ScanPacks(store, packsStored, toRead, verdicts, report, progress, cancellationToken);
                if (report.WholeRepository)
                {
                    report.IndexFilesChecked = 0;
                    CheckIndexFiles(trailers, report, cancellationToken);
                }
            }
            if (report.WholeRepository)
            {
                if (store.UnindexedPacks.Count > 0)
                    report.Notes.Add($"{store.UnindexedPacks.Count} pack(s) are in no index file (a run was interrupted, or an index file was lost or damaged): their trailers are read at every start until Repair-VmCheckpointRepository indexes them.");
                if (store.IndexedPacksGone.Count > 0)
                    report.Notes.Add($"Index files name {store.IndexedPacksGone.Count} pack(s) that are gone (left by an interrupted reclaim): Repair-VmCheckpointRepository drops them.");
            }

            using var reader = new BlockReader(store, layout);
            var buffer = new byte[RepositoryConfig.MaxBlockSize];
            foreach (var file in files)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = new VerificationResult { Id = file.Id, Time = file.Time, DataRead = readData, Repository = _repository.Path };
                report.Checkpoints.Add(result);
                CheckpointManifest? manifest = null;
                try
                {
                    manifest = _repository.ReadCheckpoint(file);
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is KeyNotFoundException)
                {
                    result.State = VerificationStatus.Damaged;
                    result.Problems.Add($"Manifest: {e.Message}");
                }
                if (manifest is null) continue;
                result.VmName = manifest.VmName;
                result.Time = manifest.StartTime;
                long total = manifest.AllBlockLists.Sum(d => (long)d.Blocks.Count), done = 0;
                foreach (var disk in manifest.AllBlockLists)
                {
                    int bad = 0;
                    for (int i = 0; i < disk.Blocks.Count; i++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        var hash = disk.Blocks.HashAt(i);
                        if (!verdicts.TryGetValue(hash, out var problem))
                        {
                            problem = Check(store, reader, packsStored, hash, readData, buffer);
                            verdicts[hash] = problem;
                        }
                        result.BlocksChecked++;
                        if (problem != null)
                        {
                            bad++;
                            if (problem.StartsWith("missing", StringComparison.Ordinal)) result.MissingBlocks++; else result.CorruptBlocks++;
                            if (result.Problems.Count < 20)
                                result.Problems.Add($"Disk {disk.Name}, block at offset {disk.Blocks.IndexAt(i) * manifest.BlockSize}: {problem}");
                        }
                        if (++done % 64 == 0) progress?.Invoke($"{manifest.VmName} {manifest.Id}", (int)(100 * done / Math.Max(1, total)));
                    }
                    if (bad > 0) result.DamagedDisks.Add(disk.Name);
                }
                result.State = result.MissingBlocks + result.CorruptBlocks == 0 ? VerificationStatus.Healthy : VerificationStatus.Damaged;
            }
            return report;
        }

        /// <summary>The configuration read again: it was checked at open, but this run is the one that says so.</summary>
        private void CheckConfiguration(VerificationReport report)
        {
            var backend = _repository.Backend;
            try
            {
                var config = RepositoryConfig.Parse(backend.ReadAll(RepositoryLayout.ConfigName), backend.Locate(RepositoryLayout.ConfigName));
                if (config.Id != _repository.Id || config.BlockSize != _repository.BlockSize)
                    report.Problems.Add(Problem(RepositoryObjectKind.Configuration, RepositoryLayout.ConfigName, "changed since the repository was opened."));
            }
            catch (Exception e) when (e is InvalidDataException || e is ObjectNotFoundException)
            {
                report.Problems.Add(Problem(RepositoryObjectKind.Configuration, RepositoryLayout.ConfigName, e.Message));
            }
        }

        /// <summary>The blocks the checkpoints use, where the store reads them from, per pack (manifests that cannot be read are reported later).</summary>
        private Dictionary<string, List<PackEntry>> BlocksToRead(IEnumerable<CheckpointFile> files, BlockStore store, HashSet<string> packsStored, CancellationToken cancellationToken)
        {
            var toRead = new Dictionary<string, List<PackEntry>>(StringComparer.Ordinal);
            var seen = new HashSet<BlockHash>();
            foreach (var file in files)
            {
                cancellationToken.ThrowIfCancellationRequested();
                CheckpointManifest manifest;
                try
                {
                    manifest = _repository.ReadCheckpoint(file);
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is KeyNotFoundException)
                {
                    continue;
                }
                foreach (var disk in manifest.AllBlockLists)
                {
                    for (int i = 0; i < disk.Blocks.Count; i++)
                    {
                        var hash = disk.Blocks.HashAt(i);
                        if (!seen.Add(hash) || !store.TryGetLocation(hash, out var at) || !packsStored.Contains(at.PackId)) continue;
                        if (!toRead.TryGetValue(at.PackId, out var list)) toRead[at.PackId] = list = new List<PackEntry>();
                        list.Add(new PackEntry(hash, at.Offset, at.StoredLength, at.RawLength, at.Compression));
                    }
                }
            }
            return toRead;
        }

        /// <summary>
        /// Reads packs, each once from start to end: every pack listed, or the blocks of <paramref name="toRead"/>. Fills
        /// the verdicts of the blocks read where the store reads them from; returns a digest of each trailer read.
        /// </summary>
        private Dictionary<string, byte[]> ScanPacks(BlockStore store, HashSet<string> packsStored, Dictionary<string, List<PackEntry>>? toRead,
            Dictionary<BlockHash, string?> verdicts, VerificationReport report, Action<string, int>? progress, CancellationToken cancellationToken)
        {
            var layout = _repository.Layout;
            var trailers = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            var ids = (toRead?.Keys ?? (IEnumerable<string>)packsStored).OrderBy(id => id, StringComparer.Ordinal).ToList();
            using var checker = new PackChecker(layout);
            for (int n = 0; n < ids.Count; n++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string id = ids[n];
                progress?.Invoke($"Pack {n + 1} of {ids.Count}", 100 * n / ids.Count);
                store.PackContents.TryGetValue(id, out var known);
                PackCheckResult checkedPack;
                try
                {
                    checkedPack = toRead is null
                        ? checker.Check(id, readAll: true, known, null, cancellationToken)
                        : checker.Check(id, readAll: false, null, toRead[id], cancellationToken);
                }
                catch (ObjectNotFoundException)
                {
                    packsStored.Remove(id); // gone since it was listed: its blocks are missing
                    continue;
                }
                report.PacksChecked++;
                report.BytesRead += checkedPack.BytesRead;
                if (checkedPack.Damaged) report.Problems.Add(Problem(RepositoryObjectKind.Pack, checkedPack.Name, checkedPack.Describe() + "."));
                if (checkedPack.Entries != null) trailers[id] = PackFormat.Digest(checkedPack.Entries);
                foreach (var (entry, problem, _) in checkedPack.Blobs)
                {
                    // Only the copy a restore would read decides the block's verdict.
                    if (!store.TryGetLocation(entry.Hash, out var at) || at.PackId != id || at.Offset != entry.Offset || at.StoredLength != entry.StoredLength
                        || at.RawLength != entry.RawLength || at.Compression != entry.Compression)
                        continue;
                    verdicts[entry.Hash] = problem is null ? null : $"corrupt: pack {id}: {problem}";
                }
            }
            return trailers;
        }

        /// <summary>Every index file against the trailers of the packs it names: an index only ever repeats what packs say.</summary>
        private void CheckIndexFiles(Dictionary<string, byte[]> trailers, VerificationReport report, CancellationToken cancellationToken)
        {
            var backend = _repository.Backend;
            foreach (var index in backend.List(RepositoryLayout.IndexPrefix).Where(o => o.Name.EndsWith(RepositoryLayout.IndexSuffix, StringComparison.Ordinal)))
            {
                cancellationToken.ThrowIfCancellationRequested();
                Dictionary<string, List<PackEntry>> packs;
                report.IndexFilesChecked++;
                try
                {
                    packs = _repository.Layout.ReadIndex(index.Name);
                }
                catch (InvalidDataException e)
                {
                    if (!report.Problems.Any(p => p.Name == index.Name)) report.Problems.Add(Problem(RepositoryObjectKind.Index, index.Name, e.Message));
                    continue;
                }
                catch (ObjectNotFoundException)
                {
                    continue;
                }
                foreach (var p in packs)
                {
                    if (trailers.TryGetValue(p.Key, out var digest) && !PackFormat.Digest(p.Value).AsSpan().SequenceEqual(digest))
                        report.Problems.Add(Problem(RepositoryObjectKind.Index, index.Name, $"lists the blobs of pack {p.Key} otherwise than the pack's own trailer."));
                }
            }
        }

        private RepositoryProblem Problem(RepositoryObjectKind kind, string name, string message)
        {
            string path = _repository.Backend.Locate(name);
            if (message.StartsWith(path + ": ", StringComparison.Ordinal)) message = message.Substring(path.Length + 2);
            return new RepositoryProblem { ObjectKind = kind, Name = name, Path = path, Message = message };
        }

        private static string? Check(BlockStore store, BlockReader reader, HashSet<string> packsStored, BlockHash hash, bool readData, byte[] buffer)
        {
            if (!store.TryGetLocation(hash, out var location)) return $"missing: block {hash} is in no pack";
            if (!packsStored.Contains(location.PackId)) return $"missing: pack {location.PackId} of block {hash} is gone";
            if (!readData) return null;
            try
            {
                reader.Read(hash, buffer);
                return null;
            }
            catch (BlockDamagedException e)
            {
                return $"corrupt: {e.Message}";
            }
        }
    }
}
