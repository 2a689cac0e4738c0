using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>Checks checkpoints and logs the run in the catalog.</summary>
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

        public IEnumerable<VerificationResult> Run(IReadOnlyCollection<CheckpointFile> checkpoints, bool readData, CancellationToken cancellationToken = default)
        {
            var job = _catalog?.StartJob(readData ? "VerifyData" : "Verify", "", _repository);
            int damaged = 0;
            var verifier = new CheckpointVerifier(_repository);
            var activity = readData ? "Verifying checkpoints (reading all data)" : "Verifying checkpoints";
            using var enumerator = verifier.Verify(checkpoints, readData, (status, percent) => _reporter.Progress(activity, status, percent), cancellationToken).GetEnumerator();
            while (true)
            {
                VerificationResult current;
                try
                {
                    if (!enumerator.MoveNext()) break;
                    current = enumerator.Current;
                }
                catch (Exception e)
                {
                    if (job != null) _catalog!.FinishJob(job, e is OperationCanceledException ? JobResult.Cancelled : JobResult.Failed, e.Message);
                    throw;
                }
                if (current.Status != VerificationStatus.Healthy) damaged++;
                yield return current;
            }
            if (job != null)
                _catalog!.FinishJob(job, damaged == 0 ? JobResult.Succeeded : JobResult.Failed,
                    damaged == 0 ? null : $"{damaged} of {checkpoints.Count} checkpoints damaged.",
                    message: $"{checkpoints.Count} checkpoints checked.");
        }
    }
}
