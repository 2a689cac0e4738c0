namespace VmCheckpoint.Core.Disks
{
    /// <summary>On-disk formats of a virtual disk.</summary>
    public enum DiskFormat
    {
        Raw,
        Qcow2,
        Vhdx,
        /// <summary>VHD, Virtual PC's and Hyper-V's older format (fixed, dynamic, differencing); qemu calls it vpc.</summary>
        Vhd,
    }
}
