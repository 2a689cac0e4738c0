using System;
using System.Linq;
using System.Runtime.ExceptionServices;
using System.Threading;
using System.Threading.Tasks;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Runs one loop on a few threads at once, the calling thread among them, as the checkpoint and restore pipelines
    /// do. The first thread to fail cancels <c>failed</c>, so that the others stop at their next step; its exception
    /// (a full disk, a damaged block), not the others' cancellations, is the one thrown.
    /// </summary>
    internal static class WorkerThreads
    {
        public static void Run(int threads, CancellationTokenSource failed, Action work)
        {
            void Guarded()
            {
                try
                {
                    work();
                }
                catch (Exception e) when (!(e is OperationCanceledException))
                {
                    failed.Cancel();
                    throw;
                }
            }

            var workers = Enumerable.Range(0, Math.Max(0, threads - 1))
                .Select(_ => Task.Factory.StartNew(Guarded, failed.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default))
                .ToArray();
            Exception? own = null;
            try
            {
                Guarded();
            }
            catch (Exception e)
            {
                own = e;
            }
            try
            {
                Task.WaitAll(workers);
            }
            catch (AggregateException)
            {
            }
            var fault = own != null && !(own is OperationCanceledException)
                ? own
                : workers.Where(w => w.IsFaulted).Select(w => w.Exception!.InnerException!).FirstOrDefault(e => !(e is OperationCanceledException)) ?? own;
            if (fault != null) ExceptionDispatchInfo.Capture(fault).Throw();
        }
    }
}
