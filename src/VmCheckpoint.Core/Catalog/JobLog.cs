using System;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Catalog
{
    /// <summary>Runs a job as one line of the job log: Running first, then Succeeded, Failed or Cancelled with the error.</summary>
    internal static class JobLog
    {
        public static T Run<T>(CheckpointCatalog? catalog, string kind, string vmName, CheckpointRepository repository, Func<JobRecord?, T> work,
            Func<T, string?>? message = null, Func<T, string?>? checkpointId = null)
        {
            var job = catalog?.StartJob(kind, vmName, repository);
            T result;
            try
            {
                result = work(job);
            }
            catch (Exception e)
            {
                if (job != null)
                {
                    bool cancelled = e is OperationCanceledException;
                    // The job's own error is what the caller must see: a catalog that cannot log it does not replace it.
                    try { catalog!.FinishJob(job, cancelled ? JobResult.Cancelled : JobResult.Failed, cancelled ? "Cancelled." : e.Message); }
                    catch (Exception logError) { e.Data["VmCheckpoint.JobLogError"] = logError.Message; }
                }
                throw;
            }
            if (job != null) catalog!.FinishJob(job, JobResult.Succeeded, checkpointId: checkpointId?.Invoke(result), message: message?.Invoke(result));
            return result;
        }
    }
}
