using System;

namespace VmCheckpoint.Core.Health
{
    public enum RecoveryAction
    {
        /// <summary>
        /// Start the VM again in place, on its own disks (nothing it wrote is lost); restore its latest checkpoint only
        /// when that restart fails or the VM needs help again within <see cref="HealthPolicy.EscalationWindow"/>; then
        /// restore on the target host. A VM paused on an I/O error is restored at once (its storage failed).
        /// </summary>
        Auto,
        /// <summary>Start the VM again in place.</summary>
        Restart,
        /// <summary>Restore its latest checkpoint that passes verification, resuming from its memory state if it has one.</summary>
        RestoreLatest,
        /// <summary>As RestoreLatest, on the target host; also what happens when the VM's own host cannot be reached.</summary>
        RestoreElsewhere,
    }

    /// <summary>What the watcher does about a VM in trouble, how often and how patiently.</summary>
    public sealed class HealthPolicy
    {
        public RecoveryAction Action { get; set; } = RecoveryAction.Auto;
        /// <summary>With <see cref="RecoveryAction.Auto"/>: a VM in trouble again this soon after a restart in place is restored instead.</summary>
        public TimeSpan EscalationWindow { get; set; } = TimeSpan.FromMinutes(10);
        /// <summary>Escalate to this host when acting in place fails or the VM's host is unreachable.</summary>
        public string? TargetUri { get; set; }
        /// <summary>Attempts per VM within <see cref="AttemptWindow"/>; then the watcher gives up on it.</summary>
        public int MaxAttempts { get; set; } = 3;
        /// <summary>Wait before the second attempt; doubled before each further one.</summary>
        public TimeSpan Cooldown { get; set; } = TimeSpan.FromSeconds(30);
        /// <summary>Attempts older than this no longer count (a VM that ran well for a while starts afresh).</summary>
        public TimeSpan AttemptWindow { get; set; } = TimeSpan.FromHours(1);
        /// <summary>The periodic check, a backstop to the hypervisor's events.</summary>
        public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);
        /// <summary>Where restored disks go: &lt;folder&gt;/&lt;vm&gt;/&lt;checkpoint id&gt;.</summary>
        public string RestoreFolder { get; set; } = "/var/lib/libvirt/images/vmcheckpoint-restored";
        /// <summary>
        /// Restore instantly where the host can (libvirt): the VM runs at once from the repository and its data is copied
        /// home in the background. False: the disks are written first (Hyper-V always is).
        /// </summary>
        public bool Instant { get; set; } = true;

        /// <summary>The wait before attempt <paramref name="attempt"/> (1-based) after the previous one.</summary>
        public TimeSpan BackOff(int attempt) =>
            attempt <= 1 ? TimeSpan.Zero : TimeSpan.FromTicks(Cooldown.Ticks * (1L << Math.Min(attempt - 2, 20)));
    }
}
