using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Checks checkpoints, and with them the repository's other objects (CheckpointVerifier), under a shared lock so that
    /// no reclaiming deletes a pack meanwhile; logs the run in the catalog.
    /// </summary>
    public sealed class VerifyJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IJobReporter _reporter;

        public VerifyJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        /// <summary>How long to wait while blocks are being reclaimed by another process.</summary>
        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(10);

        /// <summary>When the lock is refreshed and given up (tests shorten them).</summary>
        internal LockTimings? LockTimings { get; set; }

        /// <summary>The checkpoints' results only (the repository's other objects are in <see cref="Verify"/>'s report).</summary>
        public IEnumerable<VerificationResult> Run(IReadOnlyCollection<CheckpointFile> checkpoints, bool readData, CancellationToken cancellationToken = default)
            => Verify(checkpoints, readData, cancellationToken).Checkpoints;

        /// <summary>
        /// Checks the given checkpoints. When they are every checkpoint of the repository, its index files are checked too,
        /// and with <paramref name="readData"/> every byte of every pack.
        /// </summary>
        public VerificationReport Verify(IReadOnlyCollection<CheckpointFile> checkpoints, bool readData, CancellationToken cancellationToken = default)
        {
            var activity = readData ? "Verifying checkpoints (reading all data)" : "Verifying checkpoints";
            var job = _catalog?.StartJob(readData ? "VerifyData" : "Verify", "", _repository);
            VerificationReport report;
            try
            {
                using var shared = _repository.Lock(LockKind.Shared, LockWait, cancellationToken, LockTimings);
                report = shared.Run(cancellationToken, token =>
                    new CheckpointVerifier(_repository).Verify(checkpoints, readData, (status, percent) => _reporter.Progress(activity, status, percent), token));
            }
            catch (Exception e)
            {
                if (job != null)
                {
                    bool cancelled = e is OperationCanceledException;
                    // The job's own error is what the caller must see: a catalog that cannot log it does not replace it.
                    try { _catalog!.FinishJob(job, cancelled ? JobResult.Cancelled : JobResult.Failed, cancelled ? "Cancelled." : e.Message); }
                    catch (Exception logError) { e.Data["VmCheckpoint.JobLogError"] = logError.Message; }
                }
                throw;
            }
            foreach (var note in report.Notes) _reporter.Verbose(note);
            if (job != null)
            {
                string summary = Describe(report, checkpoints.Count);
                _catalog!.FinishJob(job, report.Healthy ? JobResult.Succeeded : JobResult.Failed, report.Healthy ? null : summary, message: summary);
            }
            return report;
        }

        private static string Describe(VerificationReport report, int count)
        {
            int damaged = report.Checkpoints.Count(c => c.State != VerificationStatus.Healthy);
            var parts = new List<string> { $"{count} checkpoints checked" + (damaged > 0 ? $", {damaged} damaged" : "") };
            if (report.DataRead) parts.Add($"{report.PacksChecked} packs read ({report.BytesRead} bytes)");
            if (report.WholeRepository) parts.Add($"{report.IndexFilesChecked} index files checked");
            if (report.Problems.Count > 0) parts.Add($"{report.Problems.Count} damaged objects: " + string.Join("; ", report.Problems.Take(3)));
            return string.Join(", ", parts) + ".";
        }
    }
}
