using System;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Exports;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Mounts every file system of a checkpoint's disks read-only under a folder, served straight from the repository.</summary>
    [Cmdlet(VerbsData.Mount, "VmCheckpoint", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(MountedFileSystem))]
    public sealed class MountVmCheckpointCommand : VmCheckpointCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [ValidateNotNullOrEmpty]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string Name { get; set; } = "";

        /// <summary>The checkpoint to mount; the VM's latest when omitted.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ArgumentCompleter(typeof(CheckpointIdCompleter))]
        public string? Id { get; set; }

        /// <summary>Mount only these disks' file systems.</summary>
        [Parameter]
        [Alias("Disk")]
        public string[]? DiskName { get; set; }

        /// <summary>An empty or new folder; each file system is mounted in a folder of its own under it.</summary>
        [Parameter(Mandatory = true, Position = 1)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; } = "";

        protected override void ProcessRecord()
        {
            var repository = OpenSynchronized();
            if (!(SelectCheckpoint(repository, Name, Id, "Mount") is var (chosen, file))) return;
            string path = ResolvePath(Path);
            if (!ShouldProcess(path, $"Mount the file systems of {chosen.VmName} checkpoint {chosen.Id} of {chosen.Time:u} read-only")) return;
            try
            {
                var mounted = RunJob("Mounting " + chosen.VmName, (reporter, token) =>
                    new CheckpointMount(reporter).Mount(repository, repository.ReadCheckpoint(file), path, DiskName, token));
                foreach (var fs in mounted) WriteObject(fs);
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                WriteError(ToErrorRecord(e, "Mount", chosen.Id));
            }
        }
    }

    /// <summary>Unmounts what Mount-VmCheckpoint mounted under a folder, and stops what served it.</summary>
    [Cmdlet(VerbsData.Dismount, "VmCheckpoint", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
    [OutputType(typeof(void))]
    public sealed class DismountVmCheckpointCommand : VmCheckpointCmdlet
    {
        private readonly System.Collections.Generic.HashSet<string> _done = new System.Collections.Generic.HashSet<string>(StringComparer.Ordinal);

        /// <summary>The folder given to Mount-VmCheckpoint; bound from its output objects.</summary>
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; } = "";

        protected override void ProcessRecord()
        {
            string path = System.IO.Path.GetFullPath(ResolvePath(Path)).TrimEnd('/');
            // Mount-VmCheckpoint writes one object per file system, all with the same Path: the first one dismounts.
            if (!_done.Add(path)) return;
            if (!ShouldProcess(path, "Dismount the checkpoint mounted here")) return;
            try
            {
                var state = new CheckpointMount().Dismount(path);
                WriteVerbose($"Dismounted {state.VmName} checkpoint {state.CheckpointId} from {path}.");
            }
            catch (Exception e)
            {
                WriteError(ToErrorRecord(e, "Dismount", path));
            }
        }
    }
}
