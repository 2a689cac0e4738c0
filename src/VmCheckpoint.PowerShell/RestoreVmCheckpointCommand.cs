using System;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Writes a checkpoint's disks as image files (qcow2 by default) into a folder.</summary>
    [Cmdlet(VerbsData.Restore, "VmCheckpoint", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(RestoredDisk), typeof(VmRestoreResult))]
    public sealed class RestoreVmCheckpointCommand : VmCheckpointCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string Name { get; set; } = "";

        /// <summary>The checkpoint to restore; the VM's latest when omitted.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ArgumentCompleter(typeof(CheckpointIdCompleter))]
        public string? Id { get; set; }

        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Destination { get; set; } = "";

        /// <summary>qcow2, raw or vhdx; by default qcow2, or vhdx when the VM is registered on Hyper-V.</summary>
        [Parameter]
        [ValidateSet("qcow2", "raw", "vhdx", "vhd", IgnoreCase = true)]
        public string? DiskFormat { get; set; }

        /// <summary>Restore only these disks.</summary>
        [Parameter]
        [Alias("Disk")]
        public string[]? DiskName { get; set; }

        /// <summary>VHDX: write each disk as a differencing .avhdx on &lt;folder&gt;/&lt;disk&gt;.vhdx, an earlier restore.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? DifferencingParent { get; set; }

        /// <summary>The libvirt host to define the VM on (with -Register, -Start, -ResumeMemory); qemu:///system by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string ConnectionUri { get; set; } = Core.Hypervisors.Libvirt.LibvirtConnection.DefaultUri;

        /// <summary>The hypervisor to register the VM on: by default the one the checkpoint was taken on (Libvirt for disk-file checkpoints).</summary>
        [Parameter]
        [ValidateSet(Core.Hypervisors.HypervisorNames.Libvirt, Core.Hypervisors.HypervisorNames.HyperV, IgnoreCase = true)]
        public string? Hypervisor { get; set; }

        /// <summary>The Hyper-V host to import the VM on (with -Hypervisor HyperV); this computer by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? ComputerName { get; set; }

        /// <summary>With -Hypervisor HyperV and -ComputerName: the account for the remote host (Hyper-V commands and a CIM session).</summary>
        [Parameter]
        [Credential]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        protected override PSCredential? HostCredential => Credential == PSCredential.Empty ? null : Credential;

        /// <summary>Define the VM under this name, with a new identity.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? NewName { get; set; }

        /// <summary>Define the VM on the host, its disks pointed at the restored files.</summary>
        [Parameter]
        public SwitchParameter Register { get; set; }

        /// <summary>Define and start the VM (implies -Register).</summary>
        [Parameter]
        public SwitchParameter Start { get; set; }

        /// <summary>Define the VM and resume it from the checkpoint's memory state instead of booting (implies -Register).</summary>
        [Parameter]
        public SwitchParameter ResumeMemory { get; set; }

        /// <summary>
        /// Start the VM at once from the repository (libvirt): local qcow2 overlays backed by the checkpoint's export, its
        /// data copied home in the background (implies -Start).
        /// </summary>
        [Parameter]
        public SwitchParameter Instant { get; set; }

        /// <summary>Overwrite files (and, with -Register, a VM) that already exist.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            var repository = OpenSynchronized();
            if (!(SelectCheckpoint(repository, Name, Id, "Restore") is var (chosen, file))) return;
            string hypervisor = Core.Hypervisors.HypervisorNames.Canonical(Hypervisor ?? chosen.Hypervisor);
            bool register = Register || Start || ResumeMemory || Instant || NewName != null;
            string? location = Core.Hypervisors.HypervisorNames.HostLocation(hypervisor, ConnectionUri, ComputerName);
            var request = new RestoreRequest(file, ResolvePath(Destination)) { Force = Force, DiskNames = DiskName,
                Format = DiskFormat is null ? (Core.Disks.DiskFormat?)null : (Core.Disks.DiskFormat)Enum.Parse(typeof(Core.Disks.DiskFormat), DiskFormat, ignoreCase: true),
                DifferencingParentFolder = DifferencingParent is null ? null : ResolvePath(DifferencingParent) };
            string action = Instant
                ? $"Start {chosen.VmName} from checkpoint {chosen.Id} of {chosen.Time:u} on {location ?? hypervisor + "'s default host"} at once{(ResumeMemory ? ", resumed from memory" : "")}, and copy its disks into the folder in the background"
                : register
                ? $"Restore {chosen.VmName} checkpoint {chosen.Id} of {chosen.Time:u} and define it as '{NewName ?? chosen.VmName}' on {location ?? hypervisor + "'s default host"}{(ResumeMemory ? ", resumed from memory" : Start ? ", started" : "")}"
                : $"Restore {chosen.VmName} checkpoint {chosen.Id} of {chosen.Time:u} as {(request.Format ?? Core.Disks.DiskFormat.Qcow2).ToString().ToLowerInvariant()}";
            if (!ShouldProcess(request.Destination, action)) return;
            try
            {
                if (Instant)
                {
                    if (NewName != null || DifferencingParent != null)
                        throw new ArgumentException("-Instant restores the VM under its own name from the checkpoint: drop -NewName and -DifferencingParent, or restore without -Instant.");
                    var instant = RunJob("Restoring " + Name, (reporter, token) =>
                    {
                        using var target = ConnectHypervisor(hypervisor, location);
                        return new InstantRestoreJob(repository, Catalog, target, reporter).Run(request, location, ResumeMemory, token);
                    });
                    WriteObject(instant);
                    return;
                }
                if (register)
                {
                    var result = RunJob("Restoring " + Name, (reporter, token) =>
                    {
                        using var target = ConnectHypervisor(hypervisor, location);
                        return new VmRestoreJob(repository, Catalog, target, reporter).Run(request, NewName, Start, ResumeMemory, token);
                    });
                    WriteObject(result);
                    return;
                }
                var disks = RunJob("Restoring " + Name, (reporter, token) => new RestoreJob(repository, Catalog, reporter).Run(request, token));
                foreach (var d in disks) WriteObject(d);
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                WriteError(ToErrorRecord(e, "Restore", chosen.Id));
            }
        }
    }
}
