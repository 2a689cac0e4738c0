using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>What a removal did.</summary>
    public sealed class RemoveResult
    {
        public Reporting.TextList RemovedIds { get; set; } = new Reporting.TextList();
        /// <summary>Checkpoints left in place because S3 Object Lock still keeps them (each also a warning).</summary>
        public Reporting.TextList RetainedIds { get; set; } = new Reporting.TextList();
        public ReclaimResult? Reclaim { get; set; }
    }

    /// <summary>
    /// Removes checkpoints (by id or by retention policy) and reclaims the blocks no remaining checkpoint uses.
    /// Manifests go first; blocks are reclaimed only under the repository's exclusive lock, so a checkpoint
    /// being taken by another process at the same time loses nothing (reclaiming then waits or is deferred).
    /// </summary>
    public sealed class RemoveJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;

        public RemoveJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            Reporter = reporter ?? NullJobReporter.Instance;
        }

        /// <summary>Where progress, notes and warnings go (a cmdlet sets its own for the run).</summary>
        public IJobReporter Reporter { get; set; }

        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(1);

        /// <summary>The checkpoints a policy would remove, per VM (pure: nothing is removed).</summary>
        public List<CheckpointFile> SelectByPolicy(RetentionPolicy policy, Func<string, bool> vmFilter)
        {
            var doomed = new List<CheckpointFile>();
            var byVm = new Dictionary<string, List<(CheckpointFile File, string VmName)>>(StringComparer.Ordinal);
            foreach (var file in _repository.ListCheckpoints())
            {
                string vm;
                try { vm = _repository.ReadCheckpoint(file).VmName; }
                catch (Exception e) when (e is System.IO.IOException || e is System.IO.InvalidDataException || e is KeyNotFoundException)
                {
                    Reporter.Warning($"Checkpoint {file.Id} cannot be read; the policy leaves it alone: {e.Message}");
                    continue;
                }
                if (!vmFilter(vm)) continue;
                if (!byVm.TryGetValue(vm, out var list)) byVm[vm] = list = new List<(CheckpointFile, string)>();
                list.Add((file, vm));
            }
            foreach (var vm in byVm)
            {
                var keep = policy.SelectKept(vm.Value.Select(c => (c.File.Id, c.File.Time)));
                doomed.AddRange(vm.Value.Where(c => !keep.Contains(c.File.Id)).Select(c => c.File));
            }
            return doomed;
        }

        /// <summary>Removes the given checkpoints' manifests, then reclaims unused blocks.</summary>
        public RemoveResult Run(IReadOnlyCollection<CheckpointFile> checkpoints, bool reclaim, CancellationToken cancellationToken = default)
        {
            return JobLog.Run(_catalog, "Remove", "", _repository, _ =>
            {
                var result = new RemoveResult();
                foreach (var file in checkpoints)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    try
                    {
                        _repository.DeleteCheckpoint(file);
                    }
                    catch (CheckpointRetainedException e)
                    {
                        Reporter.Warning(e.Message);
                        result.RetainedIds.Add(file.Id);
                        continue;
                    }
                    _catalog?.RemoveCheckpoint(_repository.Id, file.Id);
                    result.RemovedIds.Add(file.Id);
                    Reporter.Verbose($"Removed checkpoint {file.Id} of {file.Time:u}.");
                }
                if (reclaim)
                {
                    Reporter.Progress("Reclaiming unused blocks", _repository.Path, -1);
                    result.Reclaim = new Pruner(_repository).Reclaim(LockWait, cancellationToken);
                    if (!result.Reclaim.Completed) Reporter.Warning(result.Reclaim.Reason!);
                    else Reporter.Verbose($"Reclaimed {result.Reclaim.BytesReclaimed} bytes: {result.Reclaim.PacksDeleted} packs deleted, {result.Reclaim.PacksRewritten} rewritten.");
                }
                return result;
            }, r => $"Removed {r.RemovedIds.Count} checkpoints: {string.Join(", ", r.RemovedIds)}.");
        }
    }
}
