using System;
using System.Collections.Generic;
using System.Linq;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>
    /// What one scheduled run did, VM by VM, turned into its notice at the end: which VMs were checkpointed, which
    /// failed and why, or why the whole run could not go on (a repository that cannot be reached, a host that is down).
    /// </summary>
    public sealed class ScheduledRunReport
    {
        private readonly string _schedule;
        private readonly IReadOnlyList<string> _vmNames;
        private readonly string _repository;
        private readonly bool _watch;
        private readonly List<(string Vm, string CheckpointId)> _checkpointed = new List<(string, string)>();
        private readonly List<(string Vm, Exception Error)> _failed = new List<(string, Exception)>();

        /// <param name="vmNames">The schedule's VM names or patterns; the health watcher's VMs for a watch schedule.</param>
        public ScheduledRunReport(string schedule, IReadOnlyList<string> vmNames, string repository, bool watch = false)
        {
            _schedule = schedule;
            _vmNames = vmNames;
            _repository = repository;
            _watch = watch;
        }

        public void Checkpointed(string vm, string checkpointId) => _checkpointed.Add((vm, checkpointId));

        public void Failed(string vm, Exception error) => _failed.Add((vm, error));

        private string Rerun => $"Invoke-VmCheckpointSchedule -Name '{_schedule}'";

        private string Vms => _vmNames.Count == 0 ? "every VM" : string.Join(", ", _vmNames);

        private string Job => _watch ? $"health check of {Vms}" : $"checkpoint of {Vms} into {_repository}";

        private Notice New(NoticeKind kind, string subject) => new Notice { Kind = kind, SourceKind = "schedule", Source = _schedule, Subject = subject };

        /// <summary>The run checkpointed every VM (sent with -On Always).</summary>
        public Notice Success()
        {
            var n = New(NoticeKind.Success, $"VmCheckpoint: schedule '{_schedule}' succeeded on {Environment.MachineName}");
            n.What = _checkpointed.Count == 0
                ? $"The scheduled {Job} found no VM to checkpoint."
                : $"The scheduled {Job} checkpointed {string.Join(", ", _checkpointed.Select(c => $"{c.Vm} ({c.CheckpointId})"))}.";
            n.Why = _checkpointed.Count == 0 ? $"No VM matches {Vms} on its host." : "Every VM of the schedule was checkpointed.";
            n.NextStep = _checkpointed.Count == 0 ? "Check the schedule's VM names (Get-VmCheckpointSchedule), or nothing: no action is needed." : "None: no action is needed.";
            return n;
        }

        /// <summary>
        /// The run failed: for the VMs that failed when there are any (each with its error), else for the run as a whole.
        /// </summary>
        /// <param name="error">What the run threw.</param>
        /// <param name="nextStep">The step to take when the caller knows it better than the error's type says.</param>
        public Notice Failure(Exception error, string? nextStep = null)
        {
            if (_failed.Count == 0)
            {
                var whole = New(NoticeKind.Failure, $"VmCheckpoint: schedule '{_schedule}' failed on {Environment.MachineName}");
                whole.What = $"The scheduled {Job} failed" + (_watch ? "." : _checkpointed.Count == 0
                    ? "; no VM was checkpointed."
                    : $" after {string.Join(", ", _checkpointed.Select(c => c.Vm))} {(_checkpointed.Count == 1 ? "was" : "were")} checkpointed.");
                whole.Why = error.Message;
                whole.NextStep = nextStep ?? NextSteps.ForRun(error, _repository, Rerun);
                return whole;
            }
            int total = _failed.Count + _checkpointed.Count;
            var n = New(NoticeKind.Failure, $"VmCheckpoint: schedule '{_schedule}' failed for {_failed.Count} of {total} VMs on {Environment.MachineName}");
            n.What = $"The scheduled {Job}: {string.Join(", ", _failed.Select(f => f.Vm))} failed"
                + (_checkpointed.Count == 0 ? "." : $"; {string.Join(", ", _checkpointed.Select(c => $"{c.Vm} ({c.CheckpointId})"))} {(_checkpointed.Count == 1 ? "was" : "were")} checkpointed.");
            n.Why = string.Join("; ", _failed.Select(f => $"{f.Vm}: {f.Error.Message}"));
            n.NextStep = nextStep ?? string.Join(" ", _failed.Select(f => NextSteps.ForRun(f.Error, _repository, Rerun)).Distinct());
            return n;
        }
    }
}
