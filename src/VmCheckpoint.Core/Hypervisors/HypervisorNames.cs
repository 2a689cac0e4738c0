namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>Names stored in manifests for where a checkpoint's VM runs.</summary>
    public static class HypervisorNames
    {
        /// <summary>Disk image files checkpointed directly (a shut-off VM's disks, a copied image).</summary>
        public const string Offline = "Offline";
        public const string Libvirt = "Libvirt";
        public const string HyperV = "HyperV";

        public static bool IsHyperV(string? name) => string.Equals(name, HyperV, System.StringComparison.OrdinalIgnoreCase);

        /// <summary>The hypervisor a name given by a user (any case) or a record means: HyperV, else Libvirt.</summary>
        public static string Canonical(string? name) => IsHyperV(name) ? HyperV : Libvirt;

        /// <summary>Where a host of that hypervisor is: a Hyper-V computer name, or a libvirt URI (null: the default host).</summary>
        public static string? HostLocation(string? hypervisor, string? connectionUri, string? computerName) =>
            IsHyperV(hypervisor) ? computerName : connectionUri;
    }
}
