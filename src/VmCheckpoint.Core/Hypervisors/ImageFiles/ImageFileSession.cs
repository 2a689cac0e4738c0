using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.ImageFiles
{
    /// <summary>
    /// One checkpoint of image files. Open: every file is opened and validated, then a qcow2 gets a persistent dirty
    /// bitmap (through qemu-img) before it is read; qemu, qemu-img and qemu-io record every later write in it, so the
    /// next checkpoint reads only the blocks written since. Commit drops the bitmaps older checkpoints were read
    /// against; abandoning drops this run's bitmap instead, so the next run is incremental from the last stored one.
    /// Where a bitmap cannot be trusted (gone, left in use by a crash, cleared by a writer that does not know bitmaps)
    /// every data block is read and compared by hash.
    /// </summary>
    internal sealed class ImageFileSession : IVmCheckpointSession
    {
        private readonly IJobReporter _reporter;
        private readonly Qcow2BitmapEditor? _editor;
        private readonly string _prefix;
        private readonly List<string> _notes = new List<string>();
        private readonly List<DiskSource> _disks = new List<DiskSource>();
        private readonly List<(string Path, string Bitmap, DateTime Written, long Length)> _bitmaps = new List<(string, string, DateTime, long)>();
        private bool _committed;
        private bool _closed;

        private ImageFileSession(string vmName, Qcow2BitmapEditor? editor, IJobReporter reporter)
        {
            VmName = vmName;
            _editor = editor;
            _reporter = reporter;
            _prefix = ImageFileSource.VmPrefix(vmName);
        }

        public string VmName { get; }
        public string? VmId => null;
        public string Host => Environment.MachineName;
        public string Hypervisor => HypervisorNames.Offline;
        public string? Configuration => null;
        public IReadOnlyList<DiskSource> Disks => _disks;
        public DiskSource? Memory => null;
        public string? NewTrackingId { get; private set; }
        public double PauseSeconds => 0;
        public string? Note => _notes.Count == 0 ? null : string.Join(" ", _notes);

        public static ImageFileSession Open(string vmName, IReadOnlyList<string> paths, ImageFileOptions options, CheckpointPlan plan,
            Qcow2BitmapEditor? editor, IJobReporter reporter)
        {
            var session = new ImageFileSession(vmName, editor, reporter);
            try
            {
                session.Begin(paths, options, plan);
                return session;
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }

        private void Begin(IReadOnlyList<string> paths, ImageFileOptions options, CheckpointPlan plan)
        {
            // Every file is opened and checked before anything is written anywhere: a corrupt or hostile image
            // changes neither the repository, nor the catalog, nor any image.
            EnsureNotRunning(paths);
            var tracked = new List<DiskSource>();
            var probes = ImageFileSource.OpenDiskFiles(paths, options.Format);
            try
            {
                foreach (var d in probes)
                {
                    // Metadata the guest data does not depend on may be damaged: the data is read, and the note says so.
                    foreach (var warning in DiskImage.GetWarnings(d.Image))
                    {
                        _notes.Add(warning);
                        _reporter.Warning(warning);
                    }
                }
                if (options.ChangeTracking)
                {
                    foreach (var d in probes)
                    {
                        if (!(d.Image is Qcow2Image q)) continue;
                        string? why = q.Header.Version < 3 ? "a version 2 qcow2 cannot keep bitmaps (qemu-img amend -o compat=1.1 upgrades it)"
                            : q.Backing != null ? "its bitmaps would not see changes to its backing file"
                            : _editor == null ? "qemu-img is not installed"
                            : SeemsOpen(q);
                        if (why != null) _notes.Add($"{d.Name}: changes are not tracked: {why}.");
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
            string tracking = _prefix + BitConverter.ToString(Guid.NewGuid().ToByteArray(), 0, 8).Replace("-", "").ToLowerInvariant();
            foreach (var d in tracked)
            {
                string name = ImageFileSource.DiskBitmap(tracking, d.Name);
                if (_editor!.TryAdd(d.SourcePath, name, out string error))
                {
                    var info = new FileInfo(d.SourcePath);
                    _bitmaps.Add((d.SourcePath, name, info.LastWriteTimeUtc, info.Length));
                }
                else
                {
                    _notes.Add($"{d.Name}: changes are not tracked: qemu-img could not add a bitmap: {error}");
                }
            }
            if (_bitmaps.Count > 0) NewTrackingId = tracking;

            string? since = !plan.Full && plan.ParentTrackingId != null && plan.ParentTrackingId.StartsWith(_prefix, StringComparison.Ordinal)
                ? plan.ParentTrackingId : null;
            foreach (var d in ImageFileSource.OpenDiskFiles(paths, options.Format))
            {
                _disks.Add(WithChanges(d, since, plan));
            }
            foreach (var n in _notes) _reporter.Verbose(n);
        }

        /// <summary>
        /// A file a running VM writes is not a stopped disk: read now, it would not be of one instant, and a bitmap added
        /// behind qemu's back would be lost. Refused before anything is written, naming the VM and the live way.
        /// </summary>
        private static void EnsureNotRunning(IReadOnlyList<string> paths) =>
            FileUsers.EnsureNotInUse(paths.Select(Path.GetFullPath).ToList(), writersOnly: true, (path, user) => user.VmName != null
                ? $"{path} is a disk of {user}: its files are not read while it runs. Use Invoke-VmCheckpoint -Name '{user.VmName}' for a live checkpoint of one instant."
                : $"{path} is open for writing by {user}: a checkpoint of it now would not be of one instant. Stop that program first.");

        /// <summary>The disk with the ranges written since bitmap <paramref name="since"/>, where that bitmap can be trusted.</summary>
        private DiskSource WithChanges(DiskSource d, string? since, CheckpointPlan plan)
        {
            // A resized disk is the job's to catch, for every source of changes alike.
            if (since == null || !plan.ParentDiskFiles.ContainsKey(d.Name) || !(d.Image is Qcow2Image q)) return d;
            string name = ImageFileSource.DiskBitmap(since, d.Name);
            var changes = q.GetChangesSince(name, plan.BlockSize, out string reason);
            if (changes == null) _notes.Add($"{d.Name}: every data block is read: {reason}.");
            else _reporter.Verbose($"{d.Name}: {changes.Count} ranges written since the parent checkpoint (bitmap {name}).");
            return new DiskSource(d.Name, d.Image, changes, d.SourcePath);
        }

        public string? Seal()
        {
            CloseImages();
            return NewTrackingId;
        }

        public void Commit()
        {
            CloseImages();
            _committed = true;
            // Stored: the bitmaps older checkpoints were read against are no longer needed.
            foreach (var b in _bitmaps)
            {
                // Written while it was read (by a VM on another host, or one without qemu's image lock): that writer
                // does not know the new bitmap, so neither bitmap can be trusted; the next run reads everything.
                var info = new FileInfo(b.Path);
                bool written = info.LastWriteTimeUtc != b.Written || info.Length != b.Length;
                if (written) _reporter.Warning($"{b.Path} was written while it was checkpointed: is a VM running on it? The next checkpoint reads every data block.");
                DropBitmaps(b.Path, keep: written ? null : b.Bitmap, dropOnly: null);
            }
        }

        public void Dispose()
        {
            CloseImages();
            if (_committed) return;
            _committed = true;
            // Not stored: this run's bitmap goes, and the next run is still incremental from the checkpoint before it.
            foreach (var b in _bitmaps) DropBitmaps(b.Path, keep: null, dropOnly: b.Bitmap);
        }

        private void CloseImages()
        {
            if (_closed) return;
            _closed = true;
            foreach (var d in _disks) d.Image.Dispose();
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

        /// <summary>
        /// Removes this VM's bitmaps from an image: all but <paramref name="keep"/>, or only <paramref name="dropOnly"/>.
        /// A failure costs the next run its shortcut, never data: it is only reported.
        /// </summary>
        private void DropBitmaps(string path, string? keep, string? dropOnly)
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
                        names.AddRange(q.ReadBitmaps().Select(b => b.Name).Where(n => n.StartsWith(_prefix, StringComparison.Ordinal) && n != keep));
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) // CorruptImageException is an IOException
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
    }
}
