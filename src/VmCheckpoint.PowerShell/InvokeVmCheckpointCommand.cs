using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.Libvirt;
using VmCheckpoint.Core.Jobs;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Takes a checkpoint: of running (or shut-off) VMs on a libvirt host, or of disk image files as one VM.</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VmCheckpoint", SupportsShouldProcess = true, DefaultParameterSetName = LiveSet)]
    [OutputType(typeof(CheckpointInfo))]
    public sealed class InvokeVmCheckpointCommand : VmCheckpointCmdlet
    {
        private const string LiveSet = "Live";
        private const string DiskPathSet = "DiskPath";

        /// <summary>Image files (qcow2, raw, VHDX) to checkpoint together as the disks of one VM.</summary>
        [Parameter(Mandatory = true, ParameterSetName = DiskPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName", "Path")]
        [ValidateNotNullOrEmpty]
        public string[] DiskPath { get; set; } = new string[0];

        /// <summary>VM names (wildcards allowed for live VMs); with -DiskPath, the one name the disks are stored under.</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = LiveSet, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = DiskPathSet)]
        [Alias("VmName")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        /// <summary>The libvirt URI of the host; qemu:///system by default.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [ValidateNotNullOrEmpty]
        public string ConnectionUri { get; set; } = LibvirtConnection.DefaultUri;

        /// <summary>The VMs' hypervisor: Libvirt (by default) or HyperV.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [ValidateSet(HypervisorNames.Libvirt, HypervisorNames.HyperV, IgnoreCase = true)]
        public string Hypervisor { get; set; } = HypervisorNames.Libvirt;

        /// <summary>The Hyper-V host (with -Hypervisor HyperV); this computer by default.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [ValidateNotNullOrEmpty]
        public string? ComputerName { get; set; }

        /// <summary>Also take the memory and device state, consistent with the disks.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        public SwitchParameter IncludeMemory { get; set; }

        /// <summary>Read every allocated block instead of only the changed ones (blocks are still stored only once).</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [Parameter(ParameterSetName = DiskPathSet)]
        public SwitchParameter Full { get; set; }

        /// <summary>
        /// With -DiskPath: only read the files. By default a qcow2 file gets a persistent dirty bitmap (qemu-img bitmap),
        /// so that the next checkpoint reads only what was written since this one.
        /// </summary>
        [Parameter(ParameterSetName = DiskPathSet)]
        public SwitchParameter NoChangeTracking { get; set; }

        private readonly List<string> _paths = new List<string>();
        private readonly List<string> _vms = new List<string>();
        private IHypervisor? _hypervisor;

        protected override void ProcessRecord()
        {
            if (ParameterSetName == DiskPathSet)
            {
                foreach (var p in DiskPath)
                {
                    var resolved = GetResolvedProviderPathFromPSPath(p, out _);
                    if (resolved.Count == 0)
                        WriteError(new ErrorRecord(new System.IO.FileNotFoundException($"Disk image {p} does not exist."), "DiskNotFound", ErrorCategory.ObjectNotFound, p));
                    _paths.AddRange(resolved);
                }
                return;
            }
            try
            {
                _hypervisor ??= ConnectHypervisor(Hypervisor, HostLocation);
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Connect", HostLocation));
            }
            foreach (var name in Name)
            {
                if (WildcardPattern.ContainsWildcardCharacters(name))
                {
                    var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                    _vms.AddRange(_hypervisor!.ListVms().Where(pattern.IsMatch).Where(v => !_vms.Contains(v)));
                }
                else if (!_vms.Contains(name))
                {
                    _vms.Add(name);
                }
            }
        }

        protected override void EndProcessing()
        {
            try
            {
                if (ParameterSetName == DiskPathSet) CheckpointFiles();
                else CheckpointVms();
            }
            finally
            {
                _hypervisor?.Dispose();
                base.EndProcessing();
            }
        }

        private string? HostLocation => HypervisorNames.HostLocation(Hypervisor, ConnectionUri, ComputerName);

        private void CheckpointVms()
        {
            if (_vms.Count == 0) return;
            var repository = OpenSynchronized();
            foreach (var vm in _vms)
            {
                if (!ShouldProcess($"{vm} on {_hypervisor!.Host}", $"Checkpoint{(IncludeMemory ? " with memory" : "")} into {repository.Path}")) continue;
                try
                {
                    var plan = new CheckpointPlan { IncludeMemory = IncludeMemory, Full = Full };
                    var manifest = RunJob("Checkpointing " + vm, (reporter, token) => new VmCheckpointJob(repository, Catalog, _hypervisor!, reporter).Run(vm, plan, token));
                    WriteObject(Catalog.GetCheckpoints(repository.Id, c => c.Id == manifest.Id).First());
                }
                catch (PipelineStoppedException)
                {
                    throw;
                }
                catch (Exception e)
                {
                    WriteError(ToErrorRecord(e, "Checkpoint", vm));
                }
            }
        }

        private void CheckpointFiles()
        {
            if (_paths.Count == 0) return;
            if (Name.Length != 1)
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("With -DiskPath, give one -Name: the disks are checkpointed as the disks of one VM."), "OneName", ErrorCategory.InvalidArgument, Name));
            string name = Name[0];
            var repository = OpenSynchronized();
            if (!ShouldProcess($"{name} ({string.Join(", ", _paths)})", $"Checkpoint into {repository.Path}")) return;
            try
            {
                var plan = new ImageFilePlan { Full = Full, ChangeTracking = !NoChangeTracking };
                var manifest = RunJob("Checkpointing " + name, (reporter, token) => new ImageFileCheckpointJob(repository, Catalog, reporter).Run(name, _paths, plan, token));
                WriteObject(Catalog.GetCheckpoints(repository.Id, c => c.Id == manifest.Id).First());
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                // A file that cannot be opened is named as the target; anything later is the VM's checkpoint failing.
                object target = e switch
                {
                    Core.Disks.CorruptImageException c => c.ImagePath,
                    System.IO.FileNotFoundException f when f.FileName != null => f.FileName,
                    _ => name,
                };
                bool opening = e is Core.Disks.CorruptImageException || e is System.IO.FileNotFoundException || e is ArgumentException;
                ThrowTerminatingError(ToErrorRecord(e, opening ? "OpenDisk" : "Checkpoint", target));
            }
        }
    }
}
