using System.Collections.Generic;
using System.Diagnostics;
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
    /// <summary>What to checkpoint: one VM's disks (already opened as point-in-time views) and its configuration.</summary>
    public sealed class CheckpointRequest
    {
        public CheckpointRequest(string vmName, IReadOnlyList<DiskSource> disks)
        {
            VmName = vmName;
            Disks = disks;
        }

        public string VmName { get; }
        public IReadOnlyList<DiskSource> Disks { get; }
        /// <summary>"Offline" for image files; "Libvirt" or "HyperV" for live VMs.</summary>
        public string Hypervisor { get; set; } = Hypervisors.HypervisorNames.Offline;
        public string Host { get; set; } = Environment.MachineName;
        public string? VmId { get; set; }
        public string? Configuration { get; set; }
        public string? Note { get; set; }
        /// <summary>The hypervisor's change-tracking reference the disks' view was taken with (see CheckpointManifest).</summary>
        public string? ChangeTrackingId { get; set; }
        /// <summary>The memory and device state taken at the disks' instant (a raw view of the save file), or null.</summary>
        public DiskSource? Memory { get; set; }
        /// <summary>Called after every block is stored, before the manifest is written: the change-tracking reference to record.</summary>
        public Func<string?>? SealChangeTracking { get; set; }
        /// <summary>
        /// The checkpoint the disks' changed ranges are relative to. If another checkpoint of the VM became the latest
        /// meanwhile, the ranges describe the wrong parent: every data block is then read instead.
        /// </summary>
        public string? ChangesSince { get; set; }
        /// <summary>How long the VM was paused for this checkpoint.</summary>
        public double PauseSeconds { get; set; }
        /// <summary>How long to wait while blocks are being reclaimed by another process.</summary>
        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(10);
    }

    /// <summary>
    /// Takes one checkpoint: every data block of every disk is hashed and only blocks the repository lacks are
    /// stored; the manifest, complete on its own, is written last, so an interrupted run leaves every earlier
    /// checkpoint intact and the next run reuses what this one stored.
    /// </summary>
    public sealed class CheckpointJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IJobReporter _reporter;

        public CheckpointJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public CheckpointManifest Run(CheckpointRequest request, CancellationToken cancellationToken = default)
        {
            VmNames.Validate(request.VmName);
            if (request.Disks.Count == 0) throw new ArgumentException("A checkpoint needs at least one disk.");
            return JobLog.Run(_catalog, "Checkpoint", request.VmName, _repository, _ => Store(request, cancellationToken), JobMessage, m => m.Id);
        }

        /// <summary>The job log's line for a stored checkpoint: what its VM paused for memory, and the run's note.</summary>
        internal static string? JobMessage(CheckpointManifest m)
        {
            string? pause = m.Memory is null ? null : $"Memory taken; the VM stood still {m.Statistics.PauseSeconds * 1000:0} ms.";
            return pause is null ? m.Note : m.Note is null ? pause : pause + " " + m.Note;
        }

        /// <summary>Stores the checkpoint and indexes it, without a line in the job log (the caller's job has it).</summary>
        internal CheckpointManifest Store(CheckpointRequest request, CancellationToken cancellationToken)
        {
            if (request.Disks.Count == 0) throw new ArgumentException("A checkpoint needs at least one disk.");
            var manifest = RunLocked(request, cancellationToken);
            _catalog?.AddCheckpoint(_repository, manifest);
            return manifest;
        }

        private CheckpointManifest RunLocked(CheckpointRequest request, CancellationToken cancellationToken)
        {
            var clock = Stopwatch.StartNew();
            var start = DateTime.UtcNow;
            using var repositoryLock = _repository.Lock(LockKind.Shared, request.LockWait, cancellationToken);
            // A lock that can no longer be refreshed stops the run before another process could take it for stale.
            return repositoryLock.Run(cancellationToken, token => StoreUnderLock(request, clock, start, token));
        }

        private CheckpointManifest StoreUnderLock(CheckpointRequest request, Stopwatch clock, DateTime start, CancellationToken cancellationToken)
        {
            using var store = _repository.OpenStore(cancellationToken);
            var parent = FindParent(request.VmName);
            _reporter.Verbose(parent is null
                ? $"No earlier checkpoint of '{request.VmName}': every data block is read; blocks already in the repository are not stored again."
                : $"Parent checkpoint {parent.Id} of {parent.StartTime:u}: only blocks whose hash changed are stored.");

            var manifest = new CheckpointManifest
            {
                VmName = request.VmName,
                Hypervisor = request.Hypervisor,
                Host = request.Host,
                VmId = request.VmId,
                StartTime = start,
                ParentId = parent?.Id,
                BlockSize = _repository.BlockSize,
                Configuration = request.Configuration,
                Note = request.Note,
                ChangeTrackingId = request.ChangeTrackingId,
            };
            manifest.Statistics.PauseSeconds = request.PauseSeconds;
            bool useChanges = true;
            if (request.Disks.Any(d => d.ChangedExtents != null) && parent != null && request.ChangesSince != parent.Id)
            {
                useChanges = false;
                _reporter.Warning($"The changes were tracked since checkpoint {request.ChangesSince ?? "(none)"}, but the latest checkpoint of '{request.VmName}' is now {parent.Id}: every data block is read.");
            }
            var uploader = new DiskUploader(store, _repository.BlockSize);
            const string activity = "Checkpointing";
            for (int i = 0; i < request.Disks.Count; i++)
            {
                var disk = request.Disks[i];
                var parentDisk = parent?.Disks.FirstOrDefault(d => string.Equals(d.Name, disk.Name, StringComparison.Ordinal));
                bool diskChanges = useChanges;
                if (diskChanges && disk.ChangedExtents != null && parentDisk != null && parentDisk.VirtualSize != disk.Image.VirtualSize)
                {
                    // Tracking follows a resize, but a disk shrunk and grown back, or grown over old data, is not a record to trust.
                    diskChanges = false;
                    string resized = $"{disk.Name}: every data block is read: its size changed from {parentDisk.VirtualSize} to {disk.Image.VirtualSize} bytes.";
                    _reporter.Verbose(resized);
                    manifest.Note = manifest.Note is null ? resized : manifest.Note + " " + resized;
                }
                var progress = new TransferProgress(_reporter, activity, $"{request.VmName}: disk {disk.Name} ({i + 1} of {request.Disks.Count})", _repository.BlockSize);
                progress.Start();
                var table = uploader.Upload(disk, parentDisk?.Blocks, manifest.Statistics, progress.Report, cancellationToken, diskChanges);
                manifest.Disks.Add(new DiskManifest(disk.Name, disk.SourcePath, disk.Image.Format, disk.Image.VirtualSize, table));
            }
            if (request.Memory != null)
            {
                // Memory is chunked like a disk: pages unchanged since the last checkpoint deduplicate.
                var memory = request.Memory;
                var memoryProgress = new TransferProgress(_reporter, activity, $"{request.VmName}: memory state", _repository.BlockSize);
                var table = uploader.Upload(memory, parent?.Memory?.Blocks, manifest.Statistics, memoryProgress.Report, cancellationToken);
                manifest.Memory = new DiskManifest(memory.Name, memory.SourcePath, DiskFormat.Raw, memory.Image.VirtualSize, table);
            }
            store.Flush();
            cancellationToken.ThrowIfCancellationRequested();
            if (request.SealChangeTracking != null) manifest.ChangeTrackingId = request.SealChangeTracking();
            manifest.EndTime = DateTime.UtcNow;
            manifest.Statistics.DurationSeconds = clock.Elapsed.TotalSeconds;
            _repository.SaveCheckpoint(manifest);
            _reporter.Verbose($"Checkpoint {manifest.Id}: read {manifest.Statistics.ReadBytes} bytes, {manifest.Statistics.ChangedBytes} changed, stored {manifest.Statistics.StoredBytes} new bytes.");
            return manifest;
        }

        /// <summary>The VM's newest readable checkpoint; a damaged one is skipped, never fatal.</summary>
        internal CheckpointManifest? FindParent(string vmName)
        {
            foreach (var file in _repository.ListCheckpoints(vmName).Reverse())
            {
                try
                {
                    var m = _repository.ReadCheckpoint(file);
                    if (m.VmName == vmName) return m;
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is KeyNotFoundException)
                {
                    _reporter.Warning($"Checkpoint {file.Id} cannot be read and is not used as parent: {e.Message}");
                }
            }
            return null;
        }
    }
}
