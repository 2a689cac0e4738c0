using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>How to checkpoint image files that no VM is running on.</summary>
    public sealed class ImageFilePlan
    {
        /// <summary>Read every data block even where the files tracked what changed (blocks are still stored once).</summary>
        public bool Full { get; set; }

        /// <summary>
        /// Keep a persistent dirty bitmap in each qcow2 (version 3, no backing file), so that the next checkpoint reads
        /// only what was written since this one. Off: the files are only read, and every data block is read each time.
        /// </summary>
        public bool ChangeTracking { get; set; } = true;
    }

    /// <summary>
    /// Checkpoints image files as the disks of one VM. A qcow2 gets a persistent dirty bitmap (through qemu-img) before
    /// it is read; qemu, qemu-img and qemu-io record every later write in it, so the next checkpoint reads only the
    /// blocks written since, and takes the rest from this one. The bitmap that a checkpoint was read against is
    /// dropped only once the next checkpoint is stored; when a bitmap cannot be trusted (gone, left in use by a crash,
    /// cleared by a writer that does not know bitmaps) every data block is read and compared by hash, as before.
    /// </summary>
    public sealed class ImageFileCheckpointJob
    {
        /// <summary>The prefix of the bitmaps this module adds; others' bitmaps are never touched.</summary>
        public const string BitmapPrefix = "vmcheckpoint-";

        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IJobReporter _reporter;
        private readonly Qcow2BitmapEditor? _editor;

        public ImageFileCheckpointJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
            : this(repository, catalog, reporter, Qcow2BitmapEditor.Find())
        {
        }

        internal ImageFileCheckpointJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter, Qcow2BitmapEditor? editor)
        {
            _repository = repository;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
            _editor = editor;
        }

        public CheckpointManifest Run(string vmName, IReadOnlyList<string> paths, ImageFilePlan plan, CancellationToken cancellationToken = default)
        {
            var job = new CheckpointJob(_repository, _catalog, _reporter);
            // Every file is opened and checked before anything is written anywhere: a corrupt or hostile image
            // changes neither the repository, nor the catalog, nor any image.
            List<DiskSource> probes;
            try
            {
                probes = CheckpointJob.OpenDiskFiles(paths);
            }
            catch (Exception e)
            {
                LogFailure(vmName, e);
                throw;
            }
            var parent = job.FindParent(vmName);
            string prefix = VmPrefix(vmName);
            string? since = parent != null && parent.Hypervisor == HypervisorNames.Offline && parent.ChangeTrackingId != null
                && parent.ChangeTrackingId.StartsWith(prefix, StringComparison.Ordinal) ? parent.ChangeTrackingId : null;
            string tracking = prefix + Hex.Random(8);
            var notes = new List<string>();
            var tracked = new List<DiskSource>();
            try
            {
                if (plan.ChangeTracking)
                {
                    foreach (var d in probes)
                    {
                        if (!(d.Image is Qcow2Image q)) continue;
                        string? why = q.Header.Version < 3 ? "a version 2 qcow2 cannot keep bitmaps (qemu-img amend -o compat=1.1 upgrades it)"
                            : q.Backing != null ? "its bitmaps would not see changes to its backing file"
                            : _editor == null ? "qemu-img is not installed"
                            : SeemsOpen(q);
                        if (why != null) notes.Add($"{d.Name}: changes are not tracked: {why}.");
                        else tracked.Add(d);
                    }
                }
            }
            finally
            {
                foreach (var d in probes) d.Image.Dispose();
            }

            // The new bitmap goes in before the files are read: whatever is written after this instant is in it.
            // Each disk has its own (named for the VM, the run and the disk): a file copied over another disk's, or
            // two files swapped, never meets a bitmap that describes the other one.
            var withBitmap = new List<(string Path, string Bitmap, DateTime Written, long Length)>();
            foreach (var d in tracked)
            {
                string name = DiskBitmap(tracking, d.Name);
                if (_editor!.TryAdd(d.SourcePath, name, out string error))
                {
                    var info = new System.IO.FileInfo(d.SourcePath);
                    withBitmap.Add((d.SourcePath, name, info.LastWriteTimeUtc, info.Length));
                }
                else
                {
                    notes.Add($"{d.Name}: changes are not tracked: qemu-img could not add a bitmap: {error}");
                }
            }

            bool stored = false;
            List<DiskSource>? disks = null;
            try
            {
                try
                {
                    disks = OpenWithChanges(paths, parent, plan.Full ? null : since, notes);
                }
                catch (Exception e)
                {
                    LogFailure(vmName, e);
                    throw;
                }
                foreach (var n in notes) _reporter.Verbose(n);
                var request = new CheckpointRequest(vmName, disks)
                {
                    ChangesSince = parent?.Id,
                    ChangeTrackingId = withBitmap.Count > 0 ? tracking : null,
                    Note = notes.Count > 0 ? string.Join(" ", notes) : null,
                };
                var manifest = job.Run(request, cancellationToken);
                stored = true;
                return manifest;
            }
            finally
            {
                if (disks != null) foreach (var d in disks) d.Image.Dispose();
                // Stored: the bitmaps older checkpoints were read against are no longer needed. Not stored: this run's
                // bitmap goes, and the next run is still incremental from the checkpoint before it.
                foreach (var b in withBitmap)
                {
                    if (!stored)
                    {
                        DropBitmaps(b.Path, prefix, keep: null, dropOnly: b.Bitmap);
                        continue;
                    }
                    // Written while it was read (by a VM on another host, or one without qemu's image lock): that writer
                    // does not know the new bitmap, so neither bitmap can be trusted; the next run reads everything.
                    var info = new System.IO.FileInfo(b.Path);
                    bool written = info.LastWriteTimeUtc != b.Written || info.Length != b.Length;
                    if (written) _reporter.Warning($"{b.Path} was written while it was checkpointed: is a VM running on it? The next checkpoint reads every data block.");
                    DropBitmaps(b.Path, prefix, keep: written ? null : b.Bitmap, dropOnly: null);
                }
            }
        }

        /// <summary>Why a bitmap added now could miss writes: another program seems to have the file open for writing.</summary>
        private static string? SeemsOpen(Qcow2Image image)
        {
            if (image.Header.IsDirty) return "the image is marked dirty: a program has it open for writing, or stopped without closing it";
            try
            {
                var inUse = image.ReadBitmaps().FirstOrDefault(b => b.InUse);
                return inUse is null ? null : $"its bitmap {inUse.Name} is in use: a running VM (or one that crashed) has the file open";
            }
            catch (CorruptImageException e)
            {
                return "its bitmaps are damaged: " + e.Message;
            }
        }

        /// <summary>The prefix of one VM's bitmaps: runs for other VM names never remove them.</summary>
        internal static string VmPrefix(string vmName) => BitmapPrefix + ShortHash(vmName) + "-";

        internal static string DiskBitmap(string tracking, string diskName) => tracking + "-" + ShortHash(diskName);

        /// <summary>The first 8 hex digits of the name's SHA-256: the same hash that names the VM's folder in the repository.</summary>
        private static string ShortHash(string text) => RepositoryLayout.VmKey(text).Substring(0, 8);

        /// <summary>Opens the files again (after the bitmaps were added) with the ranges written since <paramref name="since"/>.</summary>
        private List<DiskSource> OpenWithChanges(IReadOnlyList<string> paths, CheckpointManifest? parent, string? since, List<string> notes)
        {
            var opened = CheckpointJob.OpenDiskFiles(paths);
            var result = new List<DiskSource>();
            foreach (var d in opened)
            {
                List<DiskExtent>? changes = null;
                var parentDisk = parent?.Disks.FirstOrDefault(p => string.Equals(p.Name, d.Name, StringComparison.Ordinal));
                // A resized disk is CheckpointJob's to catch, for every source of changes alike.
                if (since != null && parentDisk != null && d.Image is Qcow2Image q)
                {
                    string name = DiskBitmap(since, d.Name);
                    changes = q.GetChangesSince(name, _repository.BlockSize, out string reason);
                    if (changes == null) notes.Add($"{d.Name}: every data block is read: {reason}.");
                    else _reporter.Verbose($"{d.Name}: {changes.Count} ranges written since checkpoint {parent!.Id} (bitmap {name}).");
                }
                result.Add(new DiskSource(d.Name, d.Image, changes, d.SourcePath));
            }
            return result;
        }

        /// <summary>
        /// Removes this VM's bitmaps (<paramref name="prefix"/>) from an image: all but <paramref name="keep"/>, or only
        /// <paramref name="dropOnly"/>. A failure costs the next run its shortcut, never data: it is only reported.
        /// </summary>
        private void DropBitmaps(string path, string prefix, string? keep, string? dropOnly)
        {
            var names = new List<string>();
            if (dropOnly != null)
            {
                names.Add(dropOnly);
            }
            else
            {
                try
                {
                    using var image = DiskImage.Open(path);
                    if (image is Qcow2Image q)
                        names.AddRange(q.ReadBitmaps().Select(b => b.Name).Where(n => n.StartsWith(prefix, StringComparison.Ordinal) && n != keep));
                }
                catch (Exception e) when (e is System.IO.IOException || e is UnauthorizedAccessException) // CorruptImageException is an IOException
                {
                    _reporter.Warning($"{path}: its old change-tracking bitmaps could not be listed: {e.Message}");
                    return;
                }
            }

            foreach (var name in names)
            {
                if (!_editor!.TryRemove(path, name, out string error))
                    _reporter.Warning($"{path}: bitmap {name} could not be removed: {error}");
            }
        }

        private void LogFailure(string vmName, Exception e)
        {
            if (_catalog != null) _catalog.FinishJob(_catalog.StartJob("Checkpoint", vmName, _repository), JobResult.Failed, e.Message);
        }
    }
}
