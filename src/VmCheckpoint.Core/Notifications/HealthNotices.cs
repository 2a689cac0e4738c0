using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>The health watcher's events that an administrator must hear of: a VM restored from a checkpoint, a VM given up on.</summary>
    public static class HealthNotices
    {
        /// <summary>The notice for a health log event, or null when the event is not news (a detection, a wait, a restart, a failed try).</summary>
        public static Notice? For(HealthEvent e)
        {
            if (e.EventKind == HealthEventKind.GaveUp) return GaveUp(e);
            if (e.EventKind == HealthEventKind.Action && e.Outcome == JobResult.Succeeded && e.Action != null
                && e.Action.StartsWith("Restore", StringComparison.Ordinal)) return Restored(e);
            return null;
        }

        private static Notice Restored(HealthEvent e)
        {
            bool elsewhere = e.Action == "RestoreElsewhere";
            return new Notice
            {
                Kind = NoticeKind.Restored,
                SourceKind = "VM",
                Source = e.VmName,
                Time = e.Time,
                Subject = $"VmCheckpoint: VM '{e.VmName}' restored from a checkpoint on {e.Host}",
                What = $"The health watcher brought '{e.VmName}' back (attempt {e.Attempt}): {e.Message}",
                Why = $"It was found {Condition(e.Condition)}" + (elsewhere ? ", and its own host could not bring it back." : "."),
                NextStep = $"It runs the state of checkpoint {e.CheckpointId}: what it wrote after that checkpoint is gone. Find out why it failed "
                    + $"(Get-VmHealthEvent -Name '{e.VmName}', the host's logs) and check its data."
                    + (elsewhere ? $" It now runs on {e.Host}: make sure its old host does not start it again when that host comes back." : ""),
            };
        }

        private static Notice GaveUp(HealthEvent e) => new Notice
        {
            Kind = NoticeKind.GaveUp,
            SourceKind = "VM",
            Source = e.VmName,
            Time = e.Time,
            Subject = $"VmCheckpoint: gave up on VM '{e.VmName}' on {e.Host}",
            What = $"The health watcher stopped trying to bring '{e.VmName}' back after {e.Attempt} attempts; it stays {Condition(e.Condition)}.",
            Why = e.Message,
            NextStep = $"See what was tried (Get-VmHealthEvent -Name '{e.VmName}'), repair the VM or its host, then start it by hand or restore it "
                + $"(Restore-VmCheckpoint -Name '{e.VmName}'). The watcher tries again once its attempt window has passed.",
        };

        private static string Condition(string condition)
        {
            if (!Enum.TryParse<VmConditionKind>(condition, out var kind)) return condition;
            return kind switch
            {
                VmConditionKind.Crashed => "crashed",
                VmConditionKind.PausedOnError => "paused on a disk I/O error",
                VmConditionKind.HostUnreachable => "on a host that cannot be reached",
                VmConditionKind.Unresponsive => "not answering (its guest stopped responding)",
                _ => condition.ToLowerInvariant(),
            };
        }
    }
}
