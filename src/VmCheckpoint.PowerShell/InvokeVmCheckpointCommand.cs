using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Jobs;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Takes a checkpoint: of disk image files as one VM (-DiskPath).</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VmCheckpoint", SupportsShouldProcess = true, DefaultParameterSetName = DiskPathSet)]
    [OutputType(typeof(CheckpointInfo))]
    public sealed class InvokeVmCheckpointCommand : VmCheckpointCmdlet
    {
        private const string DiskPathSet = "DiskPath";

        /// <summary>Image files (qcow2, raw, VHDX) to checkpoint together as the disks of one VM.</summary>
        [Parameter(Mandatory = true, ParameterSetName = DiskPathSet, ValueFromPipelineByPropertyName = true)]
        [Alias("FullName", "Path")]
        [ValidateNotNullOrEmpty]
        public string[] DiskPath { get; set; } = new string[0];

        /// <summary>The VM's name in the repository.</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = DiskPathSet)]
        [Alias("VmName")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string Name { get; set; } = "";

        private readonly List<string> _paths = new List<string>();

        protected override void ProcessRecord()
        {
            foreach (var p in DiskPath)
            {
                var resolved = GetResolvedProviderPathFromPSPath(p, out _);
                if (resolved.Count == 0)
                    WriteError(new ErrorRecord(new System.IO.FileNotFoundException($"Disk image {p} does not exist."), "DiskNotFound", ErrorCategory.ObjectNotFound, p));
                _paths.AddRange(resolved);
            }
        }

        protected override void EndProcessing()
        {
            try
            {
                if (_paths.Count == 0) return;
                var repository = OpenSynchronized();
                if (!ShouldProcess($"{Name} ({string.Join(", ", _paths)})", $"Checkpoint into {repository.Path}")) return;
                List<DiskSource> disks;
                try
                {
                    disks = CheckpointJob.OpenDiskFiles(_paths);
                }
                catch (Exception e)
                {
                    Catalog.FinishJob(Catalog.StartJob("Checkpoint", Name, repository), JobResult.Failed, e.Message);
                    ThrowTerminatingError(ToErrorRecord(e, "OpenDisk", _paths.Count == 1 ? _paths[0] : (object)_paths.ToArray()));
                    return;
                }
                try
                {
                    var request = new CheckpointRequest(Name, disks);
                    var manifest = RunJob("Checkpointing " + Name, (reporter, token) => new CheckpointJob(repository, Catalog, reporter).Run(request, token));
                    WriteObject(Catalog.GetCheckpoints(repository.Id, c => c.Id == manifest.Id).First());
                }
                catch (PipelineStoppedException)
                {
                    throw;
                }
                catch (Exception e)
                {
                    ThrowTerminatingError(ToErrorRecord(e, "Checkpoint", Name));
                }
                finally
                {
                    foreach (var d in disks) d.Image.Dispose();
                }
            }
            finally
            {
                base.EndProcessing();
            }
        }
    }
}
