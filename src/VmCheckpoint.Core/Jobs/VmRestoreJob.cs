using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>What a VM restore produced.</summary>
    public sealed class VmRestoreResult
    {
        public string VmName { get; set; } = "";
        public string CheckpointId { get; set; } = "";
        public string? Host { get; set; }
        public bool Registered { get; set; }
        public bool Started { get; set; }
        public bool ResumedFromMemory { get; set; }
        /// <summary>Started from the repository at once; its data is copied home in the background (Get-VmCheckpointJob).</summary>
        public bool Instant { get; set; }
        public List<RestoredDisk> Disks { get; set; } = new List<RestoredDisk>();
    }

    /// <summary>
    /// Brings a VM back on a host: its disks restored under the destination, its configuration defined on the
    /// target hypervisor with its disks pointed at them, then started or resumed from its memory state. Anything
    /// failing leaves neither a half-defined VM nor restored files behind.
    /// </summary>
    public sealed class VmRestoreJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IHypervisor _hypervisor;
        private readonly IJobReporter _reporter;

        public VmRestoreJob(CheckpointRepository repository, CheckpointCatalog? catalog, IHypervisor hypervisor, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _hypervisor = hypervisor;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public VmRestoreResult Run(RestoreRequest disks, string? newName, bool start, bool resumeMemory, CancellationToken cancellationToken = default)
        {
            var manifest = _repository.ReadCheckpoint(disks.Checkpoint);
            if (string.IsNullOrEmpty(manifest.Configuration))
                throw new InvalidOperationException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no VM configuration (it was taken from disk files): restore its disks without -Register.");
            _hypervisor.CheckRegistration(manifest.VmName, manifest.Configuration!, newName, resumeMemory);
            string name = newName ?? manifest.VmName;
            if (!disks.Force && _hypervisor.VmExists(name))
                throw new TargetExistsException($"VM '{name}' on {_hypervisor.Host}");
            disks.IncludeMemory = resumeMemory;
            disks.Format ??= _hypervisor.PreferredDiskFormat;
            var restored = new RestoreJob(_repository, _catalog, _reporter).Run(disks, cancellationToken);
            try
            {
                var request = new RegistrationRequest(manifest.VmName, manifest.Configuration!,
                    restored.Where(d => d.Name != "memory" || !resumeMemory).Select(d => new RegisteredDisk(d.Name, d.Path, d.FormatKind)).ToList())
                {
                    NewName = newName,
                    Force = disks.Force,
                    Start = start,
                    MemoryStateFile = resumeMemory ? restored.Single(d => d.Name == "memory").Path : null,
                };
                _reporter.Progress("Restoring", $"{name}: defining it on {_hypervisor.Host}", 100);
                var registered = _hypervisor.Register(request, _reporter);
                return new VmRestoreResult
                {
                    VmName = registered,
                    CheckpointId = manifest.Id,
                    Host = _hypervisor.Host,
                    Registered = true,
                    Started = start || resumeMemory,
                    ResumedFromMemory = resumeMemory,
                    Disks = restored.Where(d => d.Name != "memory" || !resumeMemory).ToList(),
                };
            }
            catch
            {
                foreach (var d in restored) { try { File.Delete(d.Path); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
                throw;
            }
        }
    }
}
