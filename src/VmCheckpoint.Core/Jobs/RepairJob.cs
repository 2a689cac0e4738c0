using System;
using System.Threading;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Rebuilds lost or damaged index files from the packs' own trailers (IndexRepair), under the repository's exclusive
    /// lock, and logs the run in the catalog. No pack is ever deleted.
    /// </summary>
    public sealed class RepairJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IJobReporter _reporter;

        public RepairJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        /// <summary>How long to wait for checkpoints running in other processes.</summary>
        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(1);

        /// <summary>When the lock is refreshed and given up (tests shorten them).</summary>
        internal LockTimings? LockTimings { get; set; }

        /// <summary>
        /// Repairs the index. <paramref name="confirm"/> is asked with the plan before anything is written (false: the
        /// plan is returned, <see cref="RepairResult.Applied"/> false); it is not asked when nothing needs repair.
        /// </summary>
        public RepairResult Run(Func<RepairResult, bool>? confirm = null, CancellationToken cancellationToken = default)
        {
            const string activity = "Repairing the index";
            return JobLog.Run(_catalog, "Repair", "", _repository, _ =>
            {
                using var exclusive = _repository.Lock(LockKind.Exclusive, LockWait, cancellationToken, LockTimings);
                var result = exclusive.Run(cancellationToken, token =>
                    new IndexRepair(_repository, (status, percent) => _reporter.Progress(activity, status, percent)).Run(confirm, token));
                foreach (var action in result.Actions) _reporter.Verbose(action);
                return result;
            }, r => (r.Applied ? "" : r.Needed ? "Not applied: " : "") + r);
        }
    }
}
