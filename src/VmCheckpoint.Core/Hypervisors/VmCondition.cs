namespace VmCheckpoint.Core.Hypervisors
{
    public enum VmConditionKind
    {
        Running,
        /// <summary>Paused by someone (an administrator, a save): not a fault.</summary>
        Paused,
        /// <summary>Stopped on purpose (a clean shutdown, a deliberate destroy): not a crash.</summary>
        Stopped,
        /// <summary>Its process died, or it failed to start.</summary>
        Crashed,
        /// <summary>Paused by the hypervisor on a disk I/O error.</summary>
        PausedOnError,
        Missing,
        /// <summary>The host itself cannot be reached.</summary>
        HostUnreachable,
        /// <summary>Running, but its guest stopped answering (the libvirt guest agent, the Hyper-V heartbeat).</summary>
        Unresponsive,
    }

    /// <summary>A VM's health as its hypervisor reports it, with the hypervisor's own words.</summary>
    public sealed class VmCondition
    {
        public VmCondition(VmConditionKind kind, string detail)
        {
            Kind = kind;
            Detail = detail;
        }

        public VmConditionKind Kind { get; }
        public string Detail { get; }
        public bool NeedsHelp => Kind is VmConditionKind.Crashed or VmConditionKind.PausedOnError or VmConditionKind.HostUnreachable or VmConditionKind.Unresponsive;
        public override string ToString() => $"{Kind} ({Detail})";
    }
}
