namespace VmCheckpoint.Core.Disks
{
    /// <summary>On-disk formats of a virtual disk.</summary>
    public enum DiskFormat
    {
        Raw,
        Qcow2,
        Vhdx,
    }
}
