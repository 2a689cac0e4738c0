using System;
using System.Threading;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Checkpoints a VM through its hypervisor: the hypervisor gives a point-in-time view (and what changed since
    /// the VM's last stored checkpoint), <see cref="CheckpointJob"/> stores it, and only then does the hypervisor's
    /// new change-tracking reference replace the old one. Any failure leaves the old one, so the next run is
    /// still incremental from the last checkpoint that was stored.
    /// </summary>
    public sealed class VmCheckpointJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IHypervisor _hypervisor;
        private readonly IJobReporter _reporter;

        public VmCheckpointJob(CheckpointRepository repository, CheckpointCatalog? catalog, IHypervisor hypervisor, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _hypervisor = hypervisor;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public CheckpointManifest Run(string vmName, CheckpointPlan plan, CancellationToken cancellationToken = default)
        {
            var job = new CheckpointJob(_repository, _catalog, _reporter);
            var parent = job.FindParent(vmName);
            if (parent != null && parent.Hypervisor == _hypervisor.Name)
            {
                plan.ParentTrackingId ??= parent.ChangeTrackingId;
                var files = new System.Collections.Generic.Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var d in parent.Disks) files[d.Name] = d.SourcePath;
                plan.ParentDiskFiles = files;
            }
            IVmCheckpointSession session;
            try
            {
                _reporter.Progress("Checkpointing", $"{vmName}: taking a point-in-time view", 0);
                session = _hypervisor.BeginCheckpoint(vmName, plan, _reporter);
            }
            catch (Exception e)
            {
                if (_catalog != null) _catalog.FinishJob(_catalog.StartJob("Checkpoint", vmName, _repository), JobResult.Failed, e.Message);
                throw;
            }
            using (session)
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
                var manifest = job.Run(request, cancellationToken);
                session.Commit();
                return manifest;
            }
        }
    }
}
