using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Health
{
    /// <summary>
    /// Notices VMs in trouble (crashed, paused on an I/O error, a restart that failed, their host unreachable) and
    /// brings them back by the policy: restart in place, restore the latest verified checkpoint (resumed from its
    /// memory state), or restore it on another host. A clean shutdown or a deliberate destroy is left alone.
    /// Attempts are counted in the catalog's health log, so a watcher run once a minute by a timer honours the
    /// same back-off and cap as one that runs for days. A VM restored from a checkpoint, or given up on, is notified by
    /// the machine's notification settings.
    /// </summary>
    public sealed class HealthWatcher
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog _catalog;
        private readonly Func<string, IHypervisor> _connect;
        private readonly string _uri;
        private readonly HealthPolicy _policy;
        private readonly IJobReporter _reporter;
        private readonly Notifier _notifier;
        private readonly Dictionary<string, string> _movedTo = new Dictionary<string, string>(StringComparer.Ordinal);

        /// <param name="notifications">The notification settings; the machine's (<see cref="NotificationStore"/>) when not given.</param>
        public HealthWatcher(CheckpointRepository repository, CheckpointCatalog catalog, Func<string, IHypervisor> connect, string uri, HealthPolicy policy, IJobReporter? reporter = null,
            INotificationSettingsSource? notifications = null)
        {
            _repository = repository;
            _catalog = catalog;
            _connect = connect;
            _uri = uri;
            _policy = policy;
            _reporter = reporter ?? NullJobReporter.Instance;
            _notifier = new Notifier(notifications ?? new NotificationStore(), _reporter);
        }

        /// <summary>
        /// Checks until cancelled: at once when the hypervisor reports a VM's state changed (lifecycle events), and
        /// every <see cref="HealthPolicy.Interval"/> as a backstop (events can be missed: a restarted daemon, a lost
        /// connection).
        /// </summary>
        public void Run(IReadOnlyList<string>? vmNames, Action<HealthEvent> emit, CancellationToken cancellationToken)
        {
            using var changed = new AutoResetEvent(false);
            IDisposable? subscription = null;
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    if (subscription is null)
                    {
                        try
                        {
                            using var host = _connect(_uri);
                            subscription = host.SubscribeToStateChanges(name =>
                            {
                                if (vmNames is null || vmNames.Contains(name)) changed.Set();
                            });
                        }
                        catch (Exception e) when (e is HypervisorUnavailableException || e is HypervisorException)
                        {
                            _reporter.Verbose($"No lifecycle events from {_uri} ({e.Message}); checking every {_policy.Interval}.");
                        }
                    }
                    foreach (var e in CheckOnce(vmNames, cancellationToken)) emit(e);
                    WaitHandle.WaitAny(new[] { cancellationToken.WaitHandle, changed }, _policy.Interval);
                }
            }
            finally
            {
                subscription?.Dispose();
            }
        }

        /// <summary>One round: every VM checked, and acted upon where needed.</summary>
        public List<HealthEvent> CheckOnce(IReadOnlyList<string>? vmNames, CancellationToken cancellationToken)
        {
            var events = new List<HealthEvent>();
            // Instant restores still copying: followed, and finished when a crash or a restart interrupted them.
            if (InstantRestoreJob.Pending().Count > 0)
                InstantRestoreJob.Finish(_catalog, (_, location) => _connect(location ?? _uri), _reporter, cancellationToken: cancellationToken);
            IHypervisor? host = null;
            try
            {
                try { host = _connect(_uri); }
                catch (HypervisorUnavailableException e) { host = null; _reporter.Verbose(e.Message); }
                var names = vmNames ?? (host != null ? host.ListVms() : (IReadOnlyList<string>)new List<string>());
                foreach (var name in names)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (_movedTo.ContainsKey(name)) continue; // restored elsewhere: no longer this host's
                    VmCondition condition;
                    try
                    {
                        condition = host is null ? new VmCondition(VmConditionKind.HostUnreachable, $"{_uri} cannot be reached") : host.GetCondition(name);
                    }
                    catch (HypervisorUnavailableException e)
                    {
                        condition = new VmCondition(VmConditionKind.HostUnreachable, e.Message);
                    }
                    if (!condition.NeedsHelp) continue;
                    Help(host, name, condition, events, cancellationToken);
                }
            }
            finally
            {
                host?.Dispose();
            }
            return events;
        }

        private void Help(IHypervisor? host, string name, VmCondition condition, List<HealthEvent> events, CancellationToken cancellationToken)
        {
            var detected = DateTime.UtcNow;
            var clock = Stopwatch.StartNew();
            var since = detected - _policy.AttemptWindow;
            var previous = _catalog.GetHealthEvents(h => h.VmName == name && h.EventKind == HealthEventKind.Action && h.Time >= since);
            // One attempt may log several actions (a restart that failed, then a restore): attempts are counted, not actions.
            int attempt = previous.Select(h => h.Attempt).Distinct().Count() + 1;
            if (attempt > _policy.MaxAttempts)
            {
                // Give up once, loudly; then stay quiet until the window lets attempts count again.
                if (!_catalog.GetHealthEvents(h => h.VmName == name && h.EventKind == HealthEventKind.GaveUp && h.Time >= since, 1).Any())
                    Log(events, new HealthEvent { VmName = name, Host = _uri, EventKind = HealthEventKind.GaveUp, Condition = condition.Kind.ToString(), Attempt = attempt - 1,
                        Message = $"{condition.Detail}: {_policy.MaxAttempts} attempts in {_policy.AttemptWindow}; an administrator must step in." });
                return;
            }
            var wait = previous.Count == 0 ? TimeSpan.Zero : previous[0].Time + _policy.BackOff(attempt) - detected;
            if (wait > TimeSpan.Zero)
            {
                Log(events, new HealthEvent { VmName = name, Host = _uri, EventKind = HealthEventKind.Waiting, Condition = condition.Kind.ToString(), Attempt = attempt,
                    Message = $"{condition.Detail}: attempt {attempt} in {wait.TotalSeconds:0} s (back-off)." }, persist: false);
                return;
            }
            Log(events, new HealthEvent { VmName = name, Host = _uri, EventKind = HealthEventKind.Detected, Condition = condition.Kind.ToString(), Attempt = attempt, Message = condition.Detail });

            var steps = Escalation(name, condition, detected);
            (bool Succeeded, string Message, string? CheckpointId) result = (false, "", null);
            for (int i = 0; i < steps.Count; i++)
            {
                result = Act(host, name, condition, steps[i], cancellationToken);
                Log(events, Event(name, condition, steps[i], attempt, result, clock));
                if (result.Succeeded)
                {
                    if (steps[i] == RecoveryAction.RestoreElsewhere) _movedTo[name] = _policy.TargetUri!;
                    break;
                }
            }
        }

        /// <summary>
        /// The actions to try in turn, each only when the one before failed: the policy's action, then restoring on the
        /// target host when there is one. With <see cref="RecoveryAction.Auto"/>, a restart in place comes first (the VM
        /// keeps everything it wrote), unless it already had one within the escalation window, or restarting cannot help.
        /// </summary>
        internal List<RecoveryAction> Escalation(string name, VmCondition condition, DateTime now)
        {
            var steps = new List<RecoveryAction>();
            if (condition.Kind == VmConditionKind.HostUnreachable)
            {
                steps.Add(RecoveryAction.RestoreElsewhere);
                return steps;
            }
            if (_policy.Action == RecoveryAction.Auto)
            {
                var since = now - _policy.EscalationWindow;
                bool restartedRecently = _catalog.GetHealthEvents(h => h.VmName == name && h.EventKind == HealthEventKind.Action && h.Time >= since, 1)
                    .Any(h => h.Action == nameof(RecoveryAction.Restart) && h.Outcome == JobResult.Succeeded);
                if (!restartedRecently && condition.Kind != VmConditionKind.PausedOnError) steps.Add(RecoveryAction.Restart);
                steps.Add(RecoveryAction.RestoreLatest);
            }
            else
            {
                steps.Add(_policy.Action);
            }
            if (_policy.TargetUri != null && !steps.Contains(RecoveryAction.RestoreElsewhere)) steps.Add(RecoveryAction.RestoreElsewhere);
            return steps;
        }

        private HealthEvent Event(string name, VmCondition condition, RecoveryAction action, int attempt, (bool Succeeded, string Message, string? CheckpointId) result, Stopwatch clock)
            => new HealthEvent
            {
                VmName = name,
                Host = action == RecoveryAction.RestoreElsewhere ? _policy.TargetUri ?? _uri : _uri,
                EventKind = HealthEventKind.Action,
                Condition = condition.Kind.ToString(),
                Action = action.ToString(),
                Attempt = attempt,
                Outcome = result.Succeeded ? JobResult.Succeeded : JobResult.Failed,
                CheckpointId = result.CheckpointId,
                RecoverySeconds = result.Succeeded ? clock.Elapsed.TotalSeconds : (double?)null,
                Message = result.Message,
            };

        private (bool Succeeded, string Message, string? CheckpointId) Act(IHypervisor? host, string name, VmCondition condition, RecoveryAction action, CancellationToken cancellationToken)
        {
            try
            {
                switch (action)
                {
                    case RecoveryAction.Restart:
                        if (host is null) return (false, $"{_uri} cannot be reached.", null);
                        if (condition.Kind == VmConditionKind.PausedOnError)
                            return (false, "A VM paused on an I/O error is not restarted in place: its storage needs attention (or restore it).", null);
                        if (condition.Kind == VmConditionKind.Unresponsive)
                        {
                            // A guest that stopped answering is still running: power it off first, as a reset would.
                            host.StopVm(name);
                            host.StartVm(name);
                            return (true, "Powered off and restarted in place (the guest stopped answering).", null);
                        }
                        host.StartVm(name);
                        return (true, "Restarted in place.", null);
                    case RecoveryAction.RestoreLatest:
                        if (host is null) return (false, $"{_uri} cannot be reached.", null);
                        return Restore(host, _uri, name, cancellationToken);
                    default:
                        if (_policy.TargetUri is null) return (false, "No -TargetConnectionUri to restore on.", null);
                        using (var target = _connect(_policy.TargetUri)) return Restore(target, _policy.TargetUri, name, cancellationToken);
                }
            }
            catch (Exception e) when (!(e is OperationCanceledException))
            {
                return (false, e.Message, null);
            }
        }

        /// <summary>Restores the newest checkpoint of the VM that passes verification, resumed from memory if it has it.</summary>
        private (bool, string, string?) Restore(IHypervisor target, string location, string name, CancellationToken cancellationToken)
        {
            _catalog.Synchronize(_repository, cancellationToken);
            var candidates = RestoreOrder(_catalog.GetCheckpoints(_repository.Id, c => c.VmName == name && c.Hypervisor == target.Name));
            if (candidates.Count == 0) return (false, $"'{name}' has no checkpoint in {_repository.Path}.", null);
            foreach (var candidate in candidates)
            {
                var file = _repository.FindCheckpoint(candidate.Id);
                if (file is null) continue;
                var verdict = new VerifyJob(_repository, _catalog, _reporter).Run(new[] { file }, readData: false, cancellationToken).Single();
                if (verdict.State != VerificationStatus.Healthy)
                {
                    _reporter.Warning($"Checkpoint {candidate.Id} of '{name}' is damaged; trying an older one.");
                    continue;
                }
                var destination = Path.Combine(_policy.RestoreFolder, RepositoryLayout.VmKey(name), candidate.Id);
                var request = new RestoreRequest(file, destination) { Force = true, Format = target.PreferredDiskFormat };
                var result = _policy.Instant && InstantRestoreJob.Supports(target)
                    ? new InstantRestoreJob(_repository, _catalog, target, _reporter).Run(request, location.Length == 0 ? null : location, candidate.IncludesMemory, cancellationToken)
                    : new VmRestoreJob(_repository, _catalog, target, _reporter).Run(request, null, start: true, resumeMemory: candidate.IncludesMemory, cancellationToken);
                return (true, $"Restored checkpoint {candidate.Id} of {candidate.Time:u} ({Why(candidate, candidates)}) on {target.Host}" + (result.ResumedFromMemory ? ", resumed from its memory state" : ", booted") + (result.Instant ? " at once from the repository; its data is being copied home." : "."), candidate.Id);
            }
            return (false, $"No checkpoint of '{name}' passes verification.", null);
        }

        /// <summary>
        /// The order checkpoints are tried in (each only when the ones before it fail verification): those whose last
        /// boot test passed, newest first; then those never boot-tested; then those whose boot test failed, as a last
        /// resort. Within each, newest first. With no boot tests at all this is newest first, as it always was.
        /// </summary>
        internal static List<CheckpointInfo> RestoreOrder(IEnumerable<CheckpointInfo> checkpoints) =>
            checkpoints.OrderBy(c => c.BootResult switch { BootOutcome.Passed => 0, null => 1, _ => 2 })
                .ThenByDescending(c => c.Time).ThenByDescending(c => c.Id, StringComparer.Ordinal).ToList();

        /// <summary>Why this checkpoint was chosen, for the health event.</summary>
        internal static string Why(CheckpointInfo chosen, IReadOnlyList<CheckpointInfo> candidates)
        {
            var newest = candidates.OrderByDescending(c => c.Time).First();
            if (chosen.BootPassed)
                return ReferenceEquals(chosen, newest) ? "the newest, and its boot test passed" : $"the newest whose boot test passed, rather than the newer {newest.Id}" + (newest.BootResult is null ? " (never boot-tested)" : $" (boot test {newest.BootResult})");
            if (candidates.Any(c => c.BootPassed)) return "no checkpoint that passed a boot test could be restored";
            return chosen.BootResult == BootOutcome.Failed ? "its boot test failed, but nothing else could be restored"
                : candidates.Any(c => c.BootResult != null) ? "no checkpoint passed a boot test; the newest untested" : "the newest; none was boot-tested";
        }

        private void Log(List<HealthEvent> events, HealthEvent e, bool persist = true)
        {
            if (persist) _catalog.AddHealthEvent(e);
            events.Add(e);
            if (HealthNotices.For(e) is { } notice) _notifier.Send(notice);
        }
    }
}
