using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
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
        private const string LiteralPathSet = "LiteralPath";

        /// <summary>Image files (qcow2, VHDX, VHD, raw) to checkpoint together as the disks of one VM; wildcards expand.</summary>
        [Parameter(Mandatory = true, ParameterSetName = DiskPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("Path")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[] DiskPath { get; set; } = new string[0];

        /// <summary>As -DiskPath, but each path is taken as it is written: no character is a wildcard.</summary>
        [Parameter(Mandatory = true, ParameterSetName = LiteralPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("PSPath", "FullName", "LP")]
        [ValidateNotNullOrEmpty]
        public string[] LiteralPath { get; set; } = new string[0];

        /// <summary>The format of the image files (as qemu-img's -f): qcow2, vhdx, vhd or raw. By default each file's extension and content tell.</summary>
        [Parameter(ParameterSetName = DiskPathSet)]
        [Parameter(ParameterSetName = LiteralPathSet)]
        [ValidateSet("qcow2", "vhdx", "vhd", "raw", IgnoreCase = true)]
        public string? DiskFormat { get; set; }

        /// <summary>VM names (wildcards allowed for live VMs); with -DiskPath, the one name the disks are stored under.</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = LiveSet, ValueFromPipelineByPropertyName = true)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = DiskPathSet)]
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = LiteralPathSet)]
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

        /// <summary>The Hyper-V hosts (with -Hypervisor HyperV); this computer by default. Each host's VMs matching -Name are checkpointed.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [ValidateNotNullOrEmpty]
        public string[]? ComputerName { get; set; }

        /// <summary>With -Hypervisor HyperV and -ComputerName: the account for the remote host (Hyper-V commands and a CIM session).</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [Credential]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        protected override PSCredential? HostCredential => Credential == PSCredential.Empty ? null : Credential;

        /// <summary>Also take the memory and device state, consistent with the disks.</summary>
        [Parameter(ParameterSetName = LiveSet)]
        public SwitchParameter IncludeMemory { get; set; }

        /// <summary>Read every allocated block instead of only the changed ones (blocks are still stored only once).</summary>
        [Parameter(ParameterSetName = LiveSet)]
        [Parameter(ParameterSetName = DiskPathSet)]
        [Parameter(ParameterSetName = LiteralPathSet)]
        public SwitchParameter Full { get; set; }

        /// <summary>
        /// With -DiskPath: only read the files. By default a qcow2 file gets a persistent dirty bitmap (qemu-img bitmap),
        /// so that the next checkpoint reads only what was written since this one.
        /// </summary>
        [Parameter(ParameterSetName = DiskPathSet)]
        [Parameter(ParameterSetName = LiteralPathSet)]
        public SwitchParameter NoChangeTracking { get; set; }

        private readonly List<string> _paths = new List<string>();
        /// <summary>Each host (one, or one per -ComputerName) with the VMs to checkpoint there, in the order named.</summary>
        private readonly List<(IHypervisor Host, List<string> Vms)> _hosts = new List<(IHypervisor, List<string>)>();

        private bool FromFiles => ParameterSetName != LiveSet;

        protected override void ProcessRecord()
        {
            if (ParameterSetName == LiteralPathSet)
            {
                _paths.AddRange(LiteralPath.Select(p => GetUnresolvedProviderPathFromPSPath(p)));
                return;
            }
            if (ParameterSetName == DiskPathSet)
            {
                foreach (var p in DiskPath)
                {
                    var resolved = new List<string>();
                    try { resolved.AddRange(GetResolvedProviderPathFromPSPath(p, out _)); }
                    catch (ItemNotFoundException) { }
                    if (resolved.Count == 0)
                        WriteError(new ErrorRecord(new System.IO.FileNotFoundException($"Disk image {p} does not exist."), "OpenDisk.FileNotFound", ErrorCategory.ObjectNotFound, p));
                    _paths.AddRange(resolved);
                }
                return;
            }
            if (_hosts.Count == 0)
            {
                foreach (var location in HostLocations)
                {
                    try { _hosts.Add((ConnectHypervisor(Hypervisor, location), new List<string>())); }
                    catch (Exception e) when (!(e is PipelineStoppedException))
                    {
                        // One unreachable host of several: the others are still checkpointed.
                        if (HostLocations.Count == 1) ThrowTerminatingError(ToErrorRecord(e, "Connect", location));
                        WriteError(ToErrorRecord(e, "Connect", location));
                    }
                }
            }
            foreach (var (host, vms) in _hosts)
            {
                try
                {
                    foreach (var vm in VmNamePattern.Expand(Name, host.ListVms))
                        if (!vms.Contains(vm)) vms.Add(vm);
                }
                catch (Exception e) when (!(e is PipelineStoppedException))
                {
                    WriteError(ToErrorRecord(e, "Connect", host.Host));
                }
            }
        }

        protected override void EndProcessing()
        {
            try
            {
                if (FromFiles) CheckpointFiles();
                else CheckpointVms();
            }
            finally
            {
                foreach (var (host, _) in _hosts) host.Dispose();
                base.EndProcessing();
            }
        }

        private IReadOnlyList<string?> HostLocations => HostLocationsOf(Hypervisor, ConnectionUri, ComputerName);

        private void CheckpointVms()
        {
            if (_hosts.All(h => h.Vms.Count == 0)) return;
            var repository = OpenSynchronized();
            foreach (var (host, vms) in _hosts)
            foreach (var vm in vms)
            {
                if (!ShouldProcess($"{vm} on {host.Host}", $"Checkpoint{(IncludeMemory ? " with memory" : "")} into {repository.Path}")) continue;
                try
                {
                    var plan = new CheckpointPlan { IncludeMemory = IncludeMemory, Full = Full };
                    var manifest = RunJob("Checkpointing " + vm, (reporter, token) => new VmCheckpointJob(repository, Catalog, host, reporter).Run(vm, plan, token));
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
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("With -DiskPath, give one -Name: the disks are checkpointed as the disks of one VM."), "Checkpoint.OneName", ErrorCategory.InvalidArgument, Name));
            string name = Name[0];
            var repository = OpenSynchronized();
            if (!ShouldProcess($"{name} ({string.Join(", ", _paths)})", $"Checkpoint into {repository.Path}")) return;
            try
            {
                var options = new ImageFileOptions { ChangeTracking = !NoChangeTracking,
                    Format = DiskFormat is null ? (Core.Disks.DiskFormat?)null : (Core.Disks.DiskFormat)Enum.Parse(typeof(Core.Disks.DiskFormat), DiskFormat, ignoreCase: true) };
                var source = new ImageFileSource(_paths, options);
                var manifest = RunJob("Checkpointing " + name, (reporter, token) => new VmCheckpointJob(repository, Catalog, source, reporter).Run(name, new CheckpointPlan { Full = Full }, token));
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
                    Core.Disks.DiskInUseException u => u.ImagePath,
                    System.IO.FileNotFoundException f when f.FileName != null => f.FileName,
                    _ => name,
                };
                bool opening = e is Core.Disks.CorruptImageException || e is Core.Disks.DiskInUseException || e is System.IO.FileNotFoundException || e is System.IO.InvalidDataException;
                ThrowTerminatingError(ToErrorRecord(e, opening ? "OpenDisk" : "Checkpoint", target));
            }
        }
    }
}
