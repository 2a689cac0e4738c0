using System;
using VmCheckpoint.Core.Hypervisors.Libvirt;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// The one place a hypervisor's name and a host's location become an <see cref="IHypervisor"/>: libvirt by URI
    /// (qemu:///system when none), Hyper-V by computer name (this one when none). Hyper-V is reached through the
    /// Hyper-V PowerShell module, which only a PowerShell host can run: that host hands its factory in.
    /// </summary>
    public sealed class HypervisorConnector
    {
        private readonly Func<string?, IHypervisor>? _hyperV;

        /// <param name="hyperV">Connects to a Hyper-V host by computer name (null: this computer); null where Hyper-V cannot be reached.</param>
        public HypervisorConnector(Func<string?, IHypervisor>? hyperV = null)
        {
            _hyperV = hyperV;
        }

        /// <summary>Connects to the host at <paramref name="location"/> (null or empty: the hypervisor's default host).</summary>
        public IHypervisor Connect(string? hypervisor, string? location)
        {
            if (string.IsNullOrEmpty(location)) location = null;
            if (HypervisorNames.IsHyperV(hypervisor))
            {
                if (_hyperV is null)
                    throw new HypervisorUnavailableException("Hyper-V hosts are reached through the Hyper-V PowerShell module: run this from the VmCheckpoint module in PowerShell.");
                return _hyperV(location);
            }
            return new LibvirtHypervisor(location ?? LibvirtConnection.DefaultUri);
        }
    }
}
