namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>Names stored in manifests for where a checkpoint's VM runs.</summary>
    public static class HypervisorNames
    {
        /// <summary>Disk image files checkpointed directly (a shut-off VM's disks, a copied image).</summary>
        public const string Offline = "Offline";
        public const string Libvirt = "Libvirt";
        public const string HyperV = "HyperV";
    }
}
