using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Health;
using VmCheckpoint.Core.Hypervisors.Libvirt;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Scheduling
{
    /// <summary>A scheduled run found the previous run of the same schedule still going.</summary>
    public sealed class ScheduleOverlapException : Exception
    {
        public ScheduleOverlapException(string message) : base(message) { }
    }

    /// <summary>A scheduled run's new checkpoint did not pass its boot test (-BootTest).</summary>
    public sealed class BootTestFailedException : Exception
    {
        public BootTestFailedException(string message) : base(message) { }
    }

    /// <summary>A scheduled run went past its backup window (-MaxDuration) and stopped.</summary>
    public sealed class BackupWindowExceededException : Exception
    {
        public BackupWindowExceededException(string message) : base(message) { }
    }

    /// <summary>
    /// One run of a schedule, as the timer starts it: checkpoints (then retention) or one health check. A run that
    /// finds the previous one still going stops at once with <see cref="ScheduleOverlapException"/>, logged in the
    /// job log; any VM that fails makes the run fail (after the others were done), its error in the job log. A run
    /// that fails, whole or for some VMs, sends a notice (and, with -On Always, one that succeeds) by the machine's
    /// notification settings.
    /// </summary>
    public sealed class ScheduledRun
    {
        private readonly ScheduleStore _store;
        private readonly CheckpointCatalog _catalog;
        private readonly IJobReporter _reporter;
        private readonly HypervisorConnector _connector;
        private readonly INotificationSettingsSource _notifications;

        /// <param name="connector">Connects to a host of the schedule's hypervisor; libvirt only when not given.</param>
        /// <param name="notifications">The notification settings; those stored beside the schedules when not given.</param>
        public ScheduledRun(ScheduleStore store, CheckpointCatalog catalog, IJobReporter? reporter = null, HypervisorConnector? connector = null,
            INotificationSettingsSource? notifications = null)
        {
            _store = store;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
            _connector = connector ?? new HypervisorConnector();
            _notifications = notifications ?? new NotificationStore(store.Root);
        }

        public List<object> Execute(ScheduleDefinition schedule, CancellationToken cancellationToken)
        {
            var report = new ScheduledRunReport(schedule.Name, schedule.VmNames, schedule.Repository, schedule.ScheduleKind == ScheduleKind.Watch);
            var notifier = new Notifier(_notifications, _reporter);
            List<object> output;
            try
            {
                output = Execute(schedule, report, cancellationToken);
            }
            catch (Exception e) when (!(e is OperationCanceledException))
            {
                notifier.Send(report.Failure(e, e is ScheduleOverlapException
                    ? "None for this run: the next one comes at its time. If runs keep overlapping, one hangs or the interval is too short (Get-VmCheckpointJob -Result Running shows the run still going)."
                    : null), cancellationToken);
                throw;
            }
            if (schedule.ScheduleKind == ScheduleKind.Checkpoint) notifier.Send(report.Success(), cancellationToken);
            return output;
        }

        /// <summary>
        /// The error of a run stopped by its window, logged as the run's own failed job: which VMs got their
        /// checkpoint, which did not, and what to change.
        /// </summary>
        private Exception WindowClosed(ScheduleDefinition schedule, CheckpointRepository repository, List<string> done, List<string> notDone,
            List<string> failures, bool duringRetention = false)
        {
            string message = $"Schedule '{schedule.Name}' stopped at the end of its {schedule.MaxDuration} window" +
                (duringRetention ? " while removing old checkpoints (none half-removed; the next run goes on)" : "") + ". " +
                (done.Count > 0 ? $"Checkpointed: {string.Join(", ", done)}. " : "No VM was checkpointed. ") +
                (notDone.Count > 0 ? $"Not checkpointed this run: {string.Join(", ", notDone)} (the one under way was stopped and undone). " : "") +
                (failures.Count > 0 ? $"Failed: {string.Join("; ", failures)}. " : "") +
                "Give the schedule a longer -MaxDuration, or split its VMs over several schedules.";
            try { _catalog.FinishJob(_catalog.StartJob("Scheduled", string.Join(", ", schedule.VmNames), repository), JobResult.Failed, message); }
            catch (Exception logError) { message += $" (The job log could not be written: {logError.Message})"; }
            return new BackupWindowExceededException(message);
        }

        private List<object> Execute(ScheduleDefinition schedule, ScheduledRunReport report, CancellationToken cancellationToken)
        {
            CheckpointRepository repository;
            try
            {
                repository = CheckpointRepository.Open(schedule.Repository,
                    schedule.PasswordFile is null ? null : Security.RepositorySecret.FromFile(schedule.PasswordFile, "the schedule's password file " + schedule.PasswordFile));
            }
            catch (Exception e)
            {
                // No repository, so no job of any VM logs this one: the run's own line in the job log does.
                try
                {
                    var job = _catalog.StartJob("Scheduled", string.Join(", ", schedule.VmNames), null);
                    job.Repository = schedule.Repository;
                    _catalog.FinishJob(job, JobResult.Failed, $"Schedule '{schedule.Name}': {e.Message}");
                }
                catch (Exception logError) { e.Data["VmCheckpoint.JobLogError"] = logError.Message; }
                throw;
            }
            using var runLock = _store.TryTakeRunLock(schedule.Name);
            if (runLock is null)
            {
                var message = $"Schedule '{schedule.Name}': the previous run is still going; this run does nothing.";
                _catalog.FinishJob(_catalog.StartJob("Scheduled", string.Join(", ", schedule.VmNames), repository), JobResult.Failed, message);
                throw new ScheduleOverlapException(message);
            }
            _catalog.Synchronize(repository, cancellationToken);
            var output = new List<object>();
            if (schedule.ScheduleKind == ScheduleKind.Watch)
            {
                var policy = new HealthPolicy { TargetUri = schedule.TargetConnectionUri };
                if (schedule.Action != null) policy.Action = (RecoveryAction)Enum.Parse(typeof(RecoveryAction), schedule.Action, true);
                string here = schedule.HostLocation ?? (schedule.IsHyperV ? "" : LibvirtConnection.DefaultUri);
                var watcher = new HealthWatcher(repository, _catalog, where => _connector.Connect(schedule.Hypervisor, where), here, policy, _reporter, _notifications);
                output.AddRange(watcher.CheckOnce(schedule.VmNames.Count == 0 ? null : schedule.VmNames, cancellationToken));
                return output;
            }
            var failures = new List<string>();
            // The backup window: when it closes, the VM being checkpointed is stopped as Ctrl+C would (its job undoes
            // what it began), the VMs after it are left for the next run, and retention waits too.
            using var window = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (schedule.MaxDuration is { } maxDuration) window.CancelAfter(maxDuration);
            var done = new List<string>();
            using (var hypervisor = _connector.Connect(schedule.Hypervisor, schedule.HostLocation))
            {
                var names = VmNamePattern.Expand(schedule.VmNames, hypervisor.ListVms);
                for (int i = 0; i < names.Count; i++)
                {
                    string vm = names[i];
                    try
                    {
                        window.Token.ThrowIfCancellationRequested();
                        var manifest = new VmCheckpointJob(repository, _catalog, hypervisor, _reporter).Run(vm, new CheckpointPlan { IncludeMemory = schedule.IncludeMemory }, window.Token);
                        if (schedule.BootTest)
                        {
                            var file = repository.FindCheckpoint(manifest.Id) ?? throw new KeyNotFoundException($"Checkpoint {manifest.Id} of '{vm}' is gone from {repository.Path}.");
                            var options = new BootTestOptions
                            {
                                ConsolePattern = schedule.BootConsolePattern is null ? null : new System.Text.RegularExpressions.Regex(schedule.BootConsolePattern, System.Text.RegularExpressions.RegexOptions.Multiline),
                                Timeout = schedule.BootTimeout ?? TimeSpan.FromMinutes(5),
                            };
                            var boot = new BootTestJob(repository, _catalog, hypervisor, _reporter).Run(file, options, window.Token);
                            output.Add(boot);
                            if (!boot.IsPassed) throw new BootTestFailedException($"checkpoint {manifest.Id} was taken, but it failed its boot test: {boot.Reason}");
                        }
                        output.Add(_catalog.GetCheckpoints(repository.Id, c => c.Id == manifest.Id).First());
                        report.Checkpointed(vm, manifest.Id);
                        done.Add(vm);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && window.IsCancellationRequested)
                    {
                        throw WindowClosed(schedule, repository, done, names.Skip(i).ToList(), failures);
                    }
                    catch (Exception e) when (!(e is OperationCanceledException))
                    {
                        failures.Add($"{vm}: {e.Message}");
                        report.Failed(vm, e);
                    }
                }
                var policy = new RetentionPolicy { KeepLast = schedule.KeepLast, KeepDaily = schedule.KeepDaily, KeepWeekly = schedule.KeepWeekly, KeepMonthly = schedule.KeepMonthly };
                if (!policy.IsEmpty && !window.IsCancellationRequested)
                {
                    var remove = new RemoveJob(repository, _catalog, _reporter);
                    try
                    {
                        output.Add(remove.Run(remove.SelectByPolicy(policy, names.Contains), reclaim: true, window.Token));
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested && window.IsCancellationRequested)
                    {
                        throw WindowClosed(schedule, repository, done, new List<string>(), failures, duringRetention: true);
                    }
                }
            }
            if (failures.Count > 0) throw new InvalidOperationException($"Schedule '{schedule.Name}': {failures.Count} VMs failed: {string.Join("; ", failures)}");
            return output;
        }
    }
}
