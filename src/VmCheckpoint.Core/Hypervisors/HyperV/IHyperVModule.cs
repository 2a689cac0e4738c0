using System;
using System.Collections.Generic;

namespace VmCheckpoint.Core.Hypervisors.HyperV
{
    /// <summary>A VM as Get-VM describes it.</summary>
    public sealed class HyperVVm
    {
        public string Name { get; set; } = "";
        public string Id { get; set; } = "";
        /// <summary>Microsoft.HyperV.PowerShell.VMState by name: Running, Off, Saved, Paused, OffCritical, ...</summary>
        public string State { get; set; } = "";
        /// <summary>The heartbeat integration service's status (OkApplicationsHealthy, LostCommunication, ...), or null.</summary>
        public string? Heartbeat { get; set; }
        /// <summary>The configuration version ("5.0", "9.0"): RCT needs 6.2 or later.</summary>
        public string Version { get; set; } = "";
        public int Generation { get; set; } = 2;

        /// <summary>Resilient Change Tracking came with configuration version 6.2 (Windows Server 2016).</summary>
        public bool SupportsRct => System.Version.TryParse(Version, out var v) && v >= new Version(6, 2);
    }

    /// <summary>A virtual hard disk drive as Get-VMHardDiskDrive (or a snapshot's HardDrives) describes it.</summary>
    public sealed class HyperVHardDrive
    {
        public string ControllerType { get; set; } = "SCSI";
        public int ControllerNumber { get; set; }
        public int ControllerLocation { get; set; }
        public string Path { get; set; } = "";

        /// <summary>Where the drive sits (SCSI 0:1): stable while its file changes from .vhdx to .avhdx and back.</summary>
        public string Slot => $"{ControllerType}{ControllerNumber}:{ControllerLocation}";
    }

    /// <summary>A checkpoint (Hyper-V's word; "snapshot" in its WMI classes) with the files it froze.</summary>
    public sealed class HyperVSnapshot
    {
        public string Id { get; set; } = "";
        public string Name { get; set; } = "";
        /// <summary>Standard, Production or Recovery.</summary>
        public string SnapshotType { get; set; } = "";
        /// <summary>The frozen disks: the VM now writes to .avhdx children of these.</summary>
        public List<HyperVHardDrive> HardDrives { get; set; } = new List<HyperVHardDrive>();
        /// <summary>The checkpoint's configuration (.vmcx) file.</summary>
        public string? ConfigurationFile { get; set; }
        /// <summary>The checkpoint's saved memory state (.vmrs), when it was taken with memory.</summary>
        public string? MemoryStateFile { get; set; }
    }

    /// <summary>What Import-VM needs to bring a VM back: its .vmcx, and where each of its disks is now.</summary>
    public sealed class HyperVImportRequest
    {
        public HyperVImportRequest(string configurationFile, IReadOnlyDictionary<string, string> diskPathsBySlot)
        {
            ConfigurationFile = configurationFile;
            DiskPathsBySlot = diskPathsBySlot;
        }

        public string ConfigurationFile { get; }
        public IReadOnlyDictionary<string, string> DiskPathsBySlot { get; }
        /// <summary>Import as a copy with a new VM id (Import-VM -Copy -GenerateNewId), then rename to this.</summary>
        public string? NewName { get; set; }
        /// <summary>The folder the imported VM's own files go to (with -Copy).</summary>
        public string Folder { get; set; } = "";
    }

    /// <summary>A command of the Hyper-V module failed: its own message, with the command that failed.</summary>
    public sealed class HyperVException : Exception
    {
        public HyperVException(string message, Exception? inner = null) : base(message, inner) { }
    }

    /// <summary>
    /// The Hyper-V PowerShell module, as far as VmCheckpoint uses it: the narrow seam between the provider's logic
    /// (<see cref="HyperVHypervisor"/>) and the commands. The real implementation runs the commands in the calling
    /// cmdlet's runspace; on Linux, the tests run it against a stand-in of those commands (tests/HyperVStandIn).
    /// </summary>
    public interface IHyperVModule
    {
        /// <summary>The host the commands address (-ComputerName), or the local one.</summary>
        string ComputerName { get; }
        IReadOnlyList<HyperVVm> GetVms();
        /// <summary>The VM of that name, or null. Several of one name: <see cref="HyperVException"/>.</summary>
        HyperVVm? GetVm(string name);
        IReadOnlyList<HyperVHardDrive> GetHardDiskDrives(string vmName);
        /// <summary>Checkpoint-VM: a standard checkpoint (memory saved) with <paramref name="withMemory"/>, else a production one.</summary>
        HyperVSnapshot CheckpointVm(string vmName, string snapshotName, bool withMemory);
        /// <summary>Every checkpoint of the VM, recovery checkpoints included.</summary>
        IReadOnlyList<HyperVSnapshot> GetSnapshots(string vmName);
        /// <summary>Remove-VMSnapshot: the checkpoint's .avhdx children are merged into their parents.</summary>
        void RemoveSnapshot(string vmName, string snapshotId);
        /// <summary>Compare-VM, disks pointed at their new files, Import-VM; returns the imported VM's name.</summary>
        string ImportVm(HyperVImportRequest request);
        void StartVm(string vmName);
        /// <summary>Stop-VM -TurnOff: off at once, as pulling the power.</summary>
        void TurnOffVm(string vmName);
        void RemoveVm(string vmName);
    }
}
