using System.Collections.Generic;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Hypervisors.HyperV
{
    /// <summary>
    /// A reference point (Msvm_VirtualSystemReferencePoint): what a recovery checkpoint leaves behind once converted,
    /// holding the Resilient Change Tracking id of each disk at that instant.
    /// </summary>
    public sealed class HyperVReferencePoint
    {
        public string Id { get; set; } = "";
        /// <summary>RCT id per virtual disk file (the base .vhdx the VM runs on between checkpoints).</summary>
        public Dictionary<string, string> RctIds { get; set; } = new Dictionary<string, string>(System.StringComparer.OrdinalIgnoreCase);
    }

    /// <summary>One answer of GetVirtualDiskChanges: changed ranges, and how far into the asked range it got.</summary>
    public sealed class DiskChangeBatch
    {
        public List<DiskExtent> Changed { get; set; } = new List<DiskExtent>();
        /// <summary>Bytes of the asked range this answer covers (ProcessedByteLength); ask again from there.</summary>
        public long ProcessedLength { get; set; }
    }

    /// <summary>
    /// The two WMI services of root\virtualization\v2 behind Hyper-V's Resilient Change Tracking, as far as
    /// VmCheckpoint uses them: Msvm_VirtualSystemSnapshotService (CreateSnapshot of a recovery checkpoint,
    /// ConvertToReferencePoint, DestroyReferencePoint) and Msvm_ImageManagementService (GetVirtualDiskChanges).
    /// The real implementation calls them through CIM; the tests use a stand-in that follows their documented behaviour.
    /// </summary>
    public interface IHyperVChangeTracking
    {
        /// <summary>CreateSnapshot with SnapshotType 32768 (recovery): the disks freeze, the VM goes on on .avhdx children.</summary>
        HyperVSnapshot CreateRecoverySnapshot(HyperVVm vm);
        /// <summary>ConvertToReferencePoint: the children are merged back and the instant is kept as RCT ids.</summary>
        HyperVReferencePoint ConvertToReferencePoint(HyperVVm vm, HyperVSnapshot snapshot);
        IReadOnlyList<HyperVReferencePoint> GetReferencePoints(HyperVVm vm);
        void DestroyReferencePoint(HyperVVm vm, HyperVReferencePoint referencePoint);
        /// <summary>GetVirtualDiskChanges of <paramref name="path"/> since <paramref name="rctId"/> (LimitId), within a range.</summary>
        DiskChangeBatch GetVirtualDiskChanges(string path, string rctId, long offset, long length);
    }
}
