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
        [ValidateSet("qcow2", "raw", "vhdx", IgnoreCase = true)]
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

        /// <summary>Overwrite files (and, with -Register, a VM) that already exist.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        protected override void ProcessRecord()
        {
            var repository = OpenSynchronized();
            var checkpoints = Catalog.GetCheckpoints(repository.Id, c => string.Equals(c.VmName, Name, StringComparison.Ordinal));
            var matches = Id is null ? checkpoints.Take(1).ToList() : CheckpointIds.Match(checkpoints, c => c.Id, Id);
            if (matches.Count > 1)
            {
                WriteError(new ErrorRecord(new ArgumentException($"'{Id}' matches {matches.Count} checkpoints of '{Name}'; give more of the id."), "AmbiguousId", ErrorCategory.InvalidArgument, Id));
                return;
            }
            CheckpointInfo? chosen = matches.FirstOrDefault();
            if (chosen is null)
            {
                WriteError(new ErrorRecord(new ItemNotFoundException(Id is null
                        ? $"VM '{Name}' has no checkpoints in {repository.Path}."
                        : $"VM '{Name}' has no checkpoint '{Id}' in {repository.Path}."),
                    "CheckpointNotFound", ErrorCategory.ObjectNotFound, Id ?? Name));
                return;
            }
            var file = repository.FindCheckpoint(chosen.Id);
            if (file is null)
            {
                WriteError(new ErrorRecord(new ItemNotFoundException($"Checkpoint {chosen.Id} was removed meanwhile."), "CheckpointNotFound", ErrorCategory.ObjectNotFound, chosen.Id));
                return;
            }
            string hypervisor = Core.Hypervisors.HypervisorNames.Canonical(Hypervisor ?? chosen.Hypervisor);
            bool hyperV = Core.Hypervisors.HypervisorNames.IsHyperV(hypervisor);
            bool register = Register || Start || ResumeMemory || NewName != null;
            string host = hyperV ? ComputerName ?? "this Hyper-V host" : ConnectionUri;
            var format = DiskFormat is null
                ? (register && hyperV ? Core.Disks.DiskFormat.Vhdx : Core.Disks.DiskFormat.Qcow2)
                : (Core.Disks.DiskFormat)Enum.Parse(typeof(Core.Disks.DiskFormat), DiskFormat, ignoreCase: true);
            var request = new RestoreRequest(file, ResolvePath(Destination)) { Format = format, Force = Force, DiskNames = DiskName,
                DifferencingParentFolder = DifferencingParent is null ? null : ResolvePath(DifferencingParent) };
            string action = register
                ? $"Restore {chosen.VmName} checkpoint {chosen.Id} of {chosen.Time:u} and define it as '{NewName ?? chosen.VmName}' on {host}{(ResumeMemory ? ", resumed from memory" : Start ? ", started" : "")}"
                : $"Restore {chosen.VmName} checkpoint {chosen.Id} of {chosen.Time:u} as {format.ToString().ToLowerInvariant()}";
            if (!ShouldProcess(request.Destination, action)) return;
            try
            {
                if (register)
                {
                    var result = RunJob("Restoring " + Name, (reporter, token) =>
                    {
                        using var target = ConnectHypervisor(hypervisor, Core.Hypervisors.HypervisorNames.HostLocation(hypervisor, ConnectionUri, ComputerName));
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
