using System;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// An error a hypervisor reported that none of the specific types below describes (a libvirt error code, a Hyper-V
    /// WMI failure). Callers above Hypervisors catch this type, never a provider's own.
    /// </summary>
    public class HypervisorException : Exception
    {
        public HypervisorException(string message, Exception? inner = null) : base(message, inner) { }
    }

    /// <summary>The hypervisor cannot be reached (not installed, daemon down, connection refused).</summary>
    public sealed class HypervisorUnavailableException : Exception
    {
        public HypervisorUnavailableException(string message, Exception? inner = null) : base(message, inner) { }
    }

    /// <summary>No VM of that name on the host.</summary>
    public sealed class VmNotFoundException : Exception
    {
        public VmNotFoundException(string message) : base(message) { }
    }

    /// <summary>The VM is busy with another job (another checkpoint, a migration) and cannot be checkpointed now.</summary>
    public sealed class VmBusyException : Exception
    {
        public VmBusyException(string message) : base(message) { }
    }
}
