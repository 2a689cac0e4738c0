using System;
using System.Collections.Generic;
using System.Threading;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Checkpoints a VM from any source (a hypervisor host, image files): the source gives a point-in-time view (and
    /// what changed since the VM's last stored checkpoint), <see cref="CheckpointJob"/> stores it, and only then does
    /// the source's new change-tracking reference replace the old one. Any failure abandons the view, leaving the old
    /// one, so the next run is still incremental from the last checkpoint that was stored. The one orchestrator of
    /// checkpoints, and the one place a checkpoint job is logged, whatever failed.
    /// </summary>
    public sealed class VmCheckpointJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly ICheckpointSource _source;
        private readonly IJobReporter _reporter;

        public VmCheckpointJob(CheckpointRepository repository, CheckpointCatalog? catalog, ICheckpointSource source, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _source = source;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public CheckpointManifest Run(string vmName, CheckpointPlan plan, CancellationToken cancellationToken = default)
        {
            // Checked before the source opens or writes anything (a libvirt checkpoint, a bitmap).
            VmNames.Validate(vmName);
            var job = new CheckpointJob(_repository, _catalog, _reporter);
            IVmCheckpointSession? session = null;
            var manifest = JobLog.Run(_catalog, "Checkpoint", vmName, _repository, _ =>
            {
                var parent = job.FindParent(vmName);
                plan.BlockSize = _repository.BlockSize;
                if (parent != null && parent.Hypervisor == _source.Name)
                {
                    plan.ParentTrackingId ??= parent.ChangeTrackingId;
                    var files = new Dictionary<string, string>(StringComparer.Ordinal);
                    foreach (var d in parent.Disks) files[d.Name] = d.SourcePath;
                    plan.ParentDiskFiles = files;
                }
                _reporter.Progress("Checkpointing", $"{vmName}: taking a point-in-time view", 0);
                session = _source.BeginCheckpoint(vmName, plan, _reporter);
                try
                {
                    if (session.Note != null) _reporter.Verbose(session.Note);
                    var request = new CheckpointRequest(session.VmName, session.Disks)
                    {
                        Hypervisor = session.Hypervisor,
                        Host = session.Host,
                        VmId = session.VmId,
                        Configuration = session.Configuration,
                        Note = session.Note,
                        ChangesSince = parent?.Id,
                        ChangeTrackingId = session.NewTrackingId,
                        SealChangeTracking = session.Seal,
                        Memory = session.Memory,
                        PauseSeconds = session.PauseSeconds,
                    };
                    return job.Store(request, cancellationToken);
                }
                catch
                {
                    // Abandoned before anything else is logged: the source's clean-up runs first.
                    session.Dispose();
                    session = null;
                    throw;
                }
            }, CheckpointJob.JobMessage, m => m.Id);
            using (session)
            {
                // The checkpoint is stored and logged; the new change-tracking reference now replaces the old one.
                session!.Commit();
            }
            return manifest;
        }
    }
}
