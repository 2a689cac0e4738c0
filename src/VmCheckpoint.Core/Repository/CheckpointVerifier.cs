using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;

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
        public VerificationStatus Status { get; set; }
        public bool DataRead { get; set; }
        public int BlocksChecked { get; set; }
        public int MissingBlocks { get; set; }
        public int CorruptBlocks { get; set; }
        /// <summary>Names of the disks that cannot be restored whole.</summary>
        public List<string> DamagedDisks { get; set; } = new List<string>();
        public List<string> Problems { get; set; } = new List<string>();
        public string Repository { get; set; } = "";
    }

    /// <summary>
    /// Checks checkpoints: each manifest against its checksum, each block against the index and the packs
    /// stored; with <c>readData</c>, every block is read, decompressed and re-hashed (each distinct block once).
    /// </summary>
    internal sealed class CheckpointVerifier
    {
        private readonly CheckpointRepository _repository;

        public CheckpointVerifier(CheckpointRepository repository)
        {
            _repository = repository;
        }

        public IEnumerable<VerificationResult> Verify(IEnumerable<CheckpointFile> files, bool readData, Action<string, int>? progress, CancellationToken cancellationToken)
        {
            using var store = _repository.OpenStore(cancellationToken);
            using var reader = new BlockReader(store, _repository.Layout);
            var packsStored = new HashSet<string>(store.ListPacks().Select(RepositoryLayout.IdFromName), StringComparer.Ordinal);
            var verdicts = new Dictionary<BlockHash, string?>(); // null = good
            var buffer = new byte[RepositoryConfig.MaxBlockSize];
            foreach (var file in files)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var result = new VerificationResult { Id = file.Id, Time = file.Time, DataRead = readData, Repository = _repository.Path };
                CheckpointManifest? manifest = null;
                try
                {
                    manifest = _repository.ReadCheckpoint(file);
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is KeyNotFoundException)
                {
                    result.Status = VerificationStatus.Damaged;
                    result.Problems.Add($"Manifest: {e.Message}");
                }
                if (manifest is null)
                {
                    yield return result;
                    continue;
                }
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
                result.Status = result.MissingBlocks + result.CorruptBlocks == 0 ? VerificationStatus.Healthy : VerificationStatus.Damaged;
                yield return result;
            }
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
