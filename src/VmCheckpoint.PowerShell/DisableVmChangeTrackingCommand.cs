using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Hypervisors.Libvirt;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.PowerShell
{
    /// <summary>What Disable-VmChangeTracking found (and removed) in one VM or set of image files.</summary>
    public sealed class ChangeTrackingRemoval
    {
        public string VmName { get; set; } = "";
        public string Host { get; set; } = "";
        /// <summary>Each libvirt checkpoint, bitmap or reference point, named.</summary>
        public TextList Items { get; set; } = new TextList();
        /// <summary>False under -WhatIf or when nothing was there.</summary>
        public bool Removed { get; set; }
    }

    /// <summary>
    /// Removes what the module left in a VM and its files to track changes between checkpoints: libvirt checkpoints
    /// and their qcow2 bitmaps, the bitmaps of image files checkpointed with -DiskPath, Hyper-V reference points.
    /// Checkpoints in the repository are not touched; the VM's next checkpoint reads every data block once.
    /// </summary>
    [Cmdlet(VerbsLifecycle.Disable, "VmChangeTracking", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium, DefaultParameterSetName = VmSet)]
    [OutputType(typeof(ChangeTrackingRemoval))]
    public sealed class DisableVmChangeTrackingCommand : VmCheckpointCmdlet
    {
        private const string VmSet = "Vm";
        private const string DiskPathSet = "DiskPath";

        [Parameter(Mandatory = true, Position = 0, ParameterSetName = VmSet, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = new string[0];

        /// <summary>qcow2 image files checkpointed with Invoke-VmCheckpoint -DiskPath.</summary>
        [Parameter(Mandatory = true, ParameterSetName = DiskPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("Path", "FullName")]
        [ValidateNotNullOrEmpty]
        [SupportsWildcards]
        public string[] DiskPath { get; set; } = new string[0];

        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNullOrEmpty]
        public string ConnectionUri { get; set; } = LibvirtConnection.DefaultUri;

        [Parameter(ParameterSetName = VmSet)]
        [ValidateSet(HypervisorNames.Libvirt, HypervisorNames.HyperV, IgnoreCase = true)]
        public string Hypervisor { get; set; } = HypervisorNames.Libvirt;

        [Parameter(ParameterSetName = VmSet)]
        [ValidateNotNullOrEmpty]
        public string[]? ComputerName { get; set; }

        /// <summary>With -Hypervisor HyperV and -ComputerName: the account for the remote host (Hyper-V commands and a CIM session).</summary>
        [Parameter(ParameterSetName = VmSet)]
        [Credential]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        protected override PSCredential? HostCredential => Credential == PSCredential.Empty ? null : Credential;

        private readonly Dictionary<string, IHypervisor> _hypervisors = new Dictionary<string, IHypervisor>(StringComparer.OrdinalIgnoreCase);

        protected override void ProcessRecord()
        {
            if (ParameterSetName == DiskPathSet)
            {
                foreach (var given in DiskPath)
                {
                    var paths = new List<string>();
                    try { paths.AddRange(GetResolvedProviderPathFromPSPath(given, out _)); }
                    catch (ItemNotFoundException) { }
                    if (paths.Count == 0)
                        WriteError(new ErrorRecord(new System.IO.FileNotFoundException($"Disk image {given} does not exist."), "DisableChangeTracking.FileNotFound", ErrorCategory.ObjectNotFound, given));
                    foreach (var path in paths) Untrack(path);
                }
                return;
            }
            UntrackVms();
        }

        private void Untrack(string path)
        {
            try
            {
                var items = ImageFileSource.ChangeTracking(new[] { path }, remove: false);
                Finish(path, "this host", items, () => ImageFileSource.ChangeTracking(new[] { path }, remove: true));
            }
            catch (Exception e) when (!(e is PipelineStoppedException))
            {
                WriteError(ToErrorRecord(e, "DisableChangeTracking", path));
            }
        }

        private void UntrackVms()
        {
            var locations = HostLocationsOf(Hypervisor, ConnectionUri, ComputerName);
            foreach (var location in locations)
            {
                if (!_hypervisors.TryGetValue(location ?? "", out var hypervisor))
                {
                    try
                    {
                        hypervisor = ConnectHypervisor(Hypervisor, location);
                        _hypervisors[location ?? ""] = hypervisor;
                    }
                    catch (Exception e) when (!(e is PipelineStoppedException))
                    {
                        // One host of several unreachable: say so and go on with the others (as Get-VM -ComputerName does).
                        if (locations.Count == 1) ThrowTerminatingError(ToErrorRecord(e, "Connect", location));
                        WriteError(ToErrorRecord(e, "Connect", location));
                        continue;
                    }
                }
                foreach (var vm in VmNamePattern.Expand(Name, hypervisor.ListVms))
                {
                    try
                    {
                        var items = hypervisor.ChangeTracking(vm, remove: false);
                        Finish(vm, hypervisor.Host, items, () => hypervisor.ChangeTracking(vm, remove: true));
                    }
                    catch (Exception e) when (!(e is PipelineStoppedException))
                    {
                        WriteError(ToErrorRecord(e, "DisableChangeTracking", vm));
                    }
                }
            }
        }

        private void Finish(string target, string host, IReadOnlyList<string> items, Func<IReadOnlyList<string>> remove)
        {
            foreach (var item in items) WriteVerbose(item);
            var result = new ChangeTrackingRemoval { VmName = target, Host = host, Items = new TextList(items) };
            if (items.Count > 0 && ShouldProcess($"{target} on {host}", $"Remove {items.Count} change-tracking item(s): {string.Join("; ", items)}"))
            {
                result.Items = new TextList(remove());
                result.Removed = true;
            }
            WriteObject(result);
        }

        protected override void EndProcessing()
        {
            foreach (var hypervisor in _hypervisors.Values) hypervisor.Dispose();
            base.EndProcessing();
        }
    }
}
