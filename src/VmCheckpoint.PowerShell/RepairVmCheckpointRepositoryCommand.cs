using System;
using System.Management.Automation;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Rebuilds lost or damaged index files from the packs' own trailers (restic's repair index), under the repository's
    /// exclusive lock. Packs are only read: none is ever deleted.
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Repair, "VmCheckpointRepository", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    [OutputType(typeof(RepairResult))]
    public sealed class RepairVmCheckpointRepositoryCommand : VmCheckpointCmdlet
    {
        /// <summary>Seconds to wait for checkpoints running in other processes before giving up.</summary>
        [Parameter]
        [ValidateRange(0, 86400)]
        public int LockTimeout { get; set; } = 60;

        protected override void ProcessRecord()
        {
            CheckpointRepository? repository = null;
            try
            {
                repository = OpenRepository();
                var path = repository.Path;
                var catalog = Catalog;
                var result = RunJob("Repairing the index", (reporter, token) =>
                    new RepairJob(repository, catalog, reporter) { LockWait = TimeSpan.FromSeconds(LockTimeout) }
                        .Run(plan => OnPipelineThread(() => ShouldProcess(path, "Rewrite the index: " + plan)), token));
                foreach (var pack in result.DamagedPacks) WriteWarning($"Damaged pack {pack}");
                if (result.MissingBlocks > 0)
                    WriteWarning($"{result.MissingBlocks} block(s) used by checkpoint(s) {string.Join(", ", result.DamagedCheckpoints)} are in no readable pack; Test-VmCheckpoint -ReadData names the disks they reach.");
                if (result.Applied || !result.Needed) WriteObject(result);
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Repair", repository?.Path));
            }
        }
    }
}
