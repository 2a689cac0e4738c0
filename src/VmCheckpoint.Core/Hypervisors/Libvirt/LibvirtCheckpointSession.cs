using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
using System;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.Nbd;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>
    /// One checkpoint of a libvirt domain. A running domain is exported point-in-time by a pull-mode backup
    /// (NBD on a unix socket) with a new libvirt checkpoint, incremental from the parent's checkpoint while it
    /// exists; a shut-off domain is read from its disk files. With memory, the domain is saved and restored
    /// paused around the start of the backup, so memory and disks are of one instant.
    /// </summary>
    internal sealed class LibvirtCheckpointSession : IVmCheckpointSession
    {
        internal const string CheckpointPrefix = "vmckpt-";
        private readonly LibvirtHypervisor _hypervisor;
        private readonly IJobReporter _reporter;
        private readonly List<DiskSource> _disks = new List<DiskSource>();
        private readonly List<string> _notes = new List<string>();
        private LibvirtDomain _domain;
        private VmRunLock? _vmLock;
        private string? _workDir;
        private bool _backupRunning;
        private bool _committed;
        /// <summary>NewTrackingId is a checkpoint this session created (not the parent's, carried over): only then is it undone.</summary>
        private bool _created;
        /// <summary>The domain was not running: its files were read, and it must still not be running when they are sealed.</summary>
        private bool _shutOff;
        /// <summary>The overlays a live snapshot put the guest on, until they are merged back.</summary>
        private List<(string Target, string Overlay)>? _overlays;

        private LibvirtCheckpointSession(LibvirtHypervisor hypervisor, LibvirtDomain domain, IJobReporter reporter)
        {
            _hypervisor = hypervisor;
            _domain = domain;
            _reporter = reporter;
            VmName = domain.Name;
            VmId = domain.Uuid;
            Host = hypervisor.Host;
        }

        public string VmName { get; }
        public string? VmId { get; }
        public string Host { get; }
        public string Hypervisor => HypervisorNames.Libvirt;
        public string? Configuration { get; private set; }
        public IReadOnlyList<DiskSource> Disks => _disks;
        public DiskSource? Memory { get; private set; }
        public string? NewTrackingId { get; private set; }
        public double PauseSeconds { get; private set; }
        public string? Note => _notes.Count == 0 ? null : string.Join(" ", _notes);

        public static LibvirtCheckpointSession Begin(LibvirtHypervisor hypervisor, string vmName, CheckpointPlan plan, IJobReporter reporter)
        {
            var domain = hypervisor.Connection.GetDomain(vmName);
            var session = new LibvirtCheckpointSession(hypervisor, domain, reporter);
            try
            {
                session.Open(plan);
                return session;
            }
            catch
            {
                session.Dispose();
                throw;
            }
        }

        private void Open(CheckpointPlan plan)
        {
            _vmLock = VmRunLock.Take(VmId ?? VmName, VmName);
            bool previousRunDied = _vmLock.PreviousRunDied;
            Configuration = _domain.GetXml(inactive: true);
            if (!_domain.IsActive)
            {
                OpenShutOff(plan);
                return;
            }
            if (_domain.HasActiveJob)
            {
                if (!previousRunDied)
                    throw new VmBusyException($"'{VmName}' has a job running (a backup, a migration or a save by someone else); try again when it ends.");
                // A live snapshot the dead run started goes on in libvirtd: let it end (its overlays are merged below);
                // a backup job it left is ended.
                var waited = Stopwatch.StartNew();
                while (_domain.HasActiveJob && waited.Elapsed < TimeSpan.FromSeconds(60)) System.Threading.Thread.Sleep(100);
                if (_domain.HasActiveJob) _domain.AbortJob();
                _notes.Add("A job left by an interrupted run was ended.");
            }
            if (previousRunDied && _domain.State.State == LibvirtNative.StatePaused)
            {
                // Paused by the run that died (the instant of a snapshot or a save), not by its administrator: this
                // module's lock on the VM was held by that run.
                _domain.Resume();
                _notes.Add($"'{VmName}' was left paused by an interrupted checkpoint and was resumed.");
            }
            var disks = DomainXml.Disks(_domain.GetXml());
            if (disks.Any(d => IsOverlay(d.SourceFile)))
            {
                MergeOverlays(disks.Where(d => IsOverlay(d.SourceFile)).Select(d => (d.Target, d.SourceFile!)).ToList(), strict: true);
                _notes.Add("The overlays an interrupted memory checkpoint left were merged back into the disks.");
                disks = DomainXml.Disks(_domain.GetXml());
            }
            var checkpoints = _domain.ListCheckpoints();
            string? parent = plan.ParentTrackingId;
            bool incremental = !plan.Full && parent != null && checkpoints.Contains(parent);
            if (!plan.Full && parent != null && !incremental)
                _notes.Add($"Checkpoint {parent} of the last stored checkpoint is gone from libvirt: every allocated block was read and only changed ones stored.");

            _workDir = PrivateFolder.Create("vmcheckpoint-"); // qemu creates the NBD socket and scratch files here
            string socket = Path.Combine(_workDir, "nbd.sock");
            NewTrackingId = CheckpointPrefix + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff") + "-" + Guid.NewGuid().ToString("N").Substring(0, 4);
            if (plan.IncludeMemory)
            {
                string? why = LiveSnapshotUnavailable(disks);
                if (why is null)
                {
                    try
                    {
                        OpenWithLiveSnapshot(plan, disks, incremental ? parent : null);
                        return;
                    }
                    catch (LibvirtException e) when (_overlays is null)
                    {
                        // The snapshot is atomic: refused, it changed nothing. Its checkpoint goes, and the slower way follows.
                        why = $"the live snapshot was refused ({e.Message})";
                        if (_created) _domain.DeleteCheckpoint(NewTrackingId!, metadataOnly: false);
                        _created = false;
                        foreach (var d in _disks) d.Image.Dispose();
                        _disks.Clear();
                    }
                }
                _reporter.Warning($"'{VmName}' is stopped while its memory is written out (the slower way): {why}.");
                _notes.Add($"Memory taken with the VM stopped: {why}.");
            }
            _created = true;

            var clock = Stopwatch.StartNew();
            string? stateFile = plan.IncludeMemory ? Path.Combine(_workDir, "memory.save") : null;
            if (stateFile != null)
            {
                // Save stops the domain with its memory in the file; restoring it paused gives disks that stay at
                // that instant until the backup's point-in-time export begins.
                _domain.Save(stateFile);
                try
                {
                    _hypervisor.Connection.RestoreSaved(stateFile, null, paused: true);
                }
                catch (LibvirtException e)
                {
                    throw new InvalidOperationException($"'{VmName}' was saved to {stateFile} but could not be restored ({e.Message}); restore it with 'virsh restore {stateFile}'.", e);
                }
                _domain.Dispose();
                _domain = _hypervisor.Connection.GetDomain(VmName);
            }
            bool started = false;
            try
            {
                try
                {
                    StartBackup(disks, socket, incremental ? parent : null);
                    started = true;
                }
                catch (LibvirtException e) when (incremental)
                {
                    // The chain heals itself: a missing or broken bitmap (an unclean qemu exit) means a new full view.
                    _notes.Add($"Incremental backup from {parent} failed (libvirt error {e.Code}: {e.Message}); every allocated block was read and only changed ones stored.");
                    RemoveOwnCheckpoints(keep: null);
                    incremental = false;
                    StartBackup(disks, socket, null);
                    started = true;
                }
            }
            finally
            {
                if (stateFile != null)
                {
                    // A resume that fails after the backup failed must not hide why the backup failed.
                    try { _domain.Resume(); }
                    catch (LibvirtException e) when (!started) { _reporter.Warning($"'{VmName}' could not be resumed: {e.Message}. Resume it with 'virsh resume {VmName}'."); }
                    PauseSeconds = clock.Elapsed.TotalSeconds;
                }
            }
            foreach (var disk in disks.Where(d => d.Type == "file" || d.Type == "block"))
            {
                bool tracked = incremental && disk.IsQcow2 && SameFile(plan, disk);
                var image = NbdDiskImage.Connect(socket, disk.Target, tracked ? "qemu:dirty-bitmap:backup-" + disk.Target : null, disk.SourceFile);
                _disks.Add(new DiskSource(disk.Target, image, tracked ? image.GetChangedExtents() : null, disk.SourceFile));
            }
            if (stateFile != null) Memory = OpenMemory(stateFile);
        }

        /// <summary>The saved memory state, page-addressed so that it deduplicates like a disk (SavedState/).</summary>
        private DiskSource OpenMemory(string stateFile)
        {
            var image = SavedState.SavedStateImage.OpenForCheckpoint(stateFile, out string? note);
            if (note != null) _notes.Add(note);
            return new DiskSource("memory", image, null, stateFile);
        }

        /// <summary>What marks an overlay file of a memory checkpoint: "&lt;disk file&gt;.vmcheckpoint-overlay-&lt;run&gt;.qcow2".</summary>
        internal const string OverlayMarker = ".vmcheckpoint-overlay-";

        /// <summary>Set VMCHECKPOINT_MEMORY_ROUTE=save to take memory the older way (save, restore paused, backup, resume).</summary>
        public const string MemoryRouteVariable = "VMCHECKPOINT_MEMORY_ROUTE";

        private static bool IsOverlay(string? file) => file != null && Path.GetFileName(file).Contains(OverlayMarker);

        /// <summary>Why the live snapshot route cannot take this domain's memory, or null when it can.</summary>
        private static string? LiveSnapshotUnavailable(List<DomainDisk> disks)
        {
            if (string.Equals(Environment.GetEnvironmentVariable(MemoryRouteVariable), "save", StringComparison.OrdinalIgnoreCase))
                return $"{MemoryRouteVariable}=save asks for it";
            var other = disks.FirstOrDefault(d => d.Type != "file" || d.SourceFile is null);
            if (other != null) return $"disk {other.Target} is of type {other.Type}, and only file disks get an overlay";
            return null;
        }

        /// <summary>
        /// Memory and disks of one instant while the guest runs on: a new checkpoint (the next run's parent; its bitmap
        /// starts an instant before, so it marks a little more than needed, never less), then a live external snapshot:
        /// memory written while the guest runs, then one stop of milliseconds in which each disk switches to an overlay
        /// beside it. The disk files underneath stay as they were at that instant and are read as files (changes from
        /// the parent checkpoint's bitmap, which qemu stored in them); Seal merges the overlays back (blockcommit).
        /// A run that dies meanwhile leaves the guest running on the overlays: the next run merges them first.
        /// </summary>
        private void OpenWithLiveSnapshot(CheckpointPlan plan, List<DomainDisk> disks, string? parent)
        {
            var checkpoint = new StringBuilder("<domaincheckpoint><name>").Append(NewTrackingId).Append("</name><disks>");
            foreach (var d in disks)
                checkpoint.Append("<disk name='").Append(DomainXml.Escape(d.Target)).Append("' checkpoint='").Append(d.IsQcow2 ? "bitmap" : "no").Append("'/>");
            _domain.CreateCheckpoint(checkpoint.Append("</disks></domaincheckpoint>").ToString());
            _created = true;

            string stateFile = Path.Combine(_workDir!, "memory.save");
            string run = NewTrackingId!.Substring(CheckpointPrefix.Length);
            var overlays = disks.Select(d => (d.Target, Overlay: d.SourceFile + OverlayMarker + run + ".qcow2")).ToList();
            var snapshot = new StringBuilder("<domainsnapshot><memory snapshot='external' file='").Append(DomainXml.Escape(stateFile)).Append("'/><disks>");
            foreach (var (target, overlay) in overlays)
                snapshot.Append("<disk name='").Append(DomainXml.Escape(target)).Append("' snapshot='external' type='file'><driver type='qcow2'/><source file='")
                        .Append(DomainXml.Escape(overlay)).Append("'/></disk>");
            snapshot.Append("</disks></domainsnapshot>");
            var clock = Stopwatch.StartNew();
            _domain.CreateLiveSnapshot(snapshot.ToString());
            _overlays = overlays;
            PauseSeconds = (_domain.LastJobDowntime() ?? clock.Elapsed).TotalSeconds;
            _notes.Add("Memory was taken live (an external snapshot, its overlays merged back).");

            foreach (var disk in disks)
            {
                var image = DiskImage.Open(disk.SourceFile!, new BackingChain(), null, disk.Format);
                List<DiskExtent>? changes = null;
                if (parent != null && image is Disks.Qcow2.Qcow2Image q && SameFile(plan, disk))
                {
                    changes = q.GetChangesSince(parent, ShutOffChangeAlignment, out string reason);
                    if (changes == null) _notes.Add($"Disk {disk.Target}: every data block was read: {reason}.");
                }
                _disks.Add(new DiskSource(disk.Target, image, changes, disk.SourceFile));
            }
            Memory = OpenMemory(stateFile);
        }

        /// <summary>
        /// Merges overlays back into the disks underneath and deletes them. Strict (at the start of a run): a failure
        /// fails the run, which must not read disks that are not the guest's. Otherwise it is only reported: the
        /// checkpoint is whole, the guest runs on, and the next run merges what is left.
        /// </summary>
        private void MergeOverlays(List<(string Target, string Overlay)> overlays, bool strict)
        {
            foreach (var (target, overlay) in overlays)
            {
                try
                {
                    _domain.CommitActiveLayer(target, TimeSpan.FromMinutes(10));
                    File.Delete(overlay);
                }
                catch (Exception e) when (!strict && (e is LibvirtException || e is IOException || e is UnauthorizedAccessException))
                {
                    _reporter.Warning($"'{VmName}' still runs on {overlay} ({e.Message}): the next checkpoint merges it back into its disk.");
                }
            }
        }

        private void StartBackup(List<DomainDisk> disks, string socket, string? parent)
        {
            var backup = new StringBuilder("<domainbackup mode='pull'>");
            if (parent != null) backup.Append("<incremental>").Append(DomainXml.Escape(parent)).Append("</incremental>");
            backup.Append("<server transport='unix' socket='").Append(DomainXml.Escape(socket)).Append("'/><disks>");
            var checkpoint = new StringBuilder("<domaincheckpoint><name>").Append(NewTrackingId).Append("</name><disks>");
            foreach (var d in disks)
            {
                bool exported = d.Type == "file" || d.Type == "block";
                if (!exported)
                {
                    backup.Append("<disk name='").Append(DomainXml.Escape(d.Target)).Append("' backup='no'/>");
                    checkpoint.Append("<disk name='").Append(DomainXml.Escape(d.Target)).Append("' checkpoint='no'/>");
                    _notes.Add($"Disk {d.Target} (type {d.Type}) is not checkpointed.");
                    continue;
                }
                // Only qcow2 holds dirty bitmaps: raw disks are read whole and differenced by hash.
                string mode = parent != null && d.IsQcow2 ? $" backupmode='incremental' incremental='{DomainXml.Escape(parent)}'" : " backupmode='full'";
                backup.Append("<disk name='").Append(DomainXml.Escape(d.Target)).Append("' backup='yes' type='file'").Append(mode)
                      .Append("><scratch file='").Append(DomainXml.Escape(Path.Combine(_workDir!, d.Target + ".scratch"))).Append("'/></disk>");
                checkpoint.Append("<disk name='").Append(DomainXml.Escape(d.Target)).Append("' checkpoint='").Append(d.IsQcow2 ? "bitmap" : "no").Append("'/>");
            }
            backup.Append("</disks></domainbackup>");
            checkpoint.Append("</disks></domaincheckpoint>");
            _domain.BeginBackup(backup.ToString(), checkpoint.ToString());
            _backupRunning = true;
        }

        /// <summary>
        /// A shut-off domain (stopped, or crashed) is read from its disk files, each opened as the format libvirt
        /// declares (a raw disk whose guest wrote a qcow2 header into it stays raw). The parent's libvirt checkpoint is a
        /// persistent bitmap in each qcow2, which qemu saved when the VM stopped cleanly and which every qemu program
        /// writing the file since has kept: where it can be trusted, only the blocks it marks are read. After a crash
        /// qemu could not save it (it is left in use): then every data block is read and compared by hash.
        /// The libvirt checkpoint is not carried over to this checkpoint: a bitmap is a record of changes since the one
        /// instant it was created, and used for two checkpoints, a disk file put back from a copy taken between them
        /// would pass for unchanged. The next live run is therefore a full read (hash-compared, storing only changes).
        /// </summary>
        private void OpenShutOff(CheckpointPlan plan)
        {
            _shutOff = true;
            if (plan.IncludeMemory) _reporter.Warning($"'{VmName}' is not running: its memory state cannot be taken; its disks are.");
            _notes.Add($"'{VmName}' was not running: its disk files were read.");
            string? parent = plan.Full ? null : plan.ParentTrackingId;
            if (parent != null && !_domain.ListCheckpoints().Contains(parent)) parent = null;
            foreach (var disk in DomainXml.Disks(Configuration!))
            {
                if (disk.SourceFile is null) { _notes.Add($"Disk {disk.Target} has no file and is not checkpointed."); continue; }
                var image = DiskImage.Open(disk.SourceFile, new BackingChain(), null, disk.Format);
                List<DiskExtent>? changes = null;
                if (parent != null && image is Disks.Qcow2.Qcow2Image q && SameFile(plan, disk))
                {
                    changes = q.GetChangesSince(parent, ShutOffChangeAlignment, out string reason);
                    if (changes == null) _notes.Add($"Disk {disk.Target}: every data block was read: {reason}.");
                }
                _disks.Add(new DiskSource(disk.Target, image, changes, disk.SourceFile));
            }
        }

        /// <summary>Whether the disk is still the file the parent read; if not, its bitmaps tell another disk's history.</summary>
        private bool SameFile(CheckpointPlan plan, DomainDisk disk)
        {
            if (plan.SameFileAsParent(disk.Target, disk.SourceFile) || !plan.ParentDiskFiles.ContainsKey(disk.Target)) return true;
            _notes.Add($"Disk {disk.Target} is {disk.SourceFile} now, not {plan.ParentDiskFiles[disk.Target]}: every allocated block of it was read.");
            return false;
        }

        /// <summary>The unit the bitmap's ranges are widened to: libvirt's bitmaps have 64 KiB granularity.</summary>
        private const long ShutOffChangeAlignment = 64 * 1024;

        public string? Seal()
        {
            if (_overlays != null)
            {
                // Everything is read: the guest goes back onto its own disk files.
                EndBackup();
                var overlays = _overlays;
                _overlays = null;
                MergeOverlays(overlays, strict: false);
            }
            // Started while its files were read: what was read may be torn, and nothing can tell which part.
            if (_shutOff && _domain.IsActive)
                throw new VmBusyException($"'{VmName}' was started while its disk files were read: run the checkpoint again.");
            return NewTrackingId;
        }

        public void Commit()
        {
            EndBackup();
            // The new checkpoint is the next run's parent; older ones of ours only slow the guest's writes. libvirt
            // deletes a checkpoint's bitmaps only while the domain runs: for a shut-off one, the next live run does it.
            if (_domain.IsActive) RemoveOwnCheckpoints(keep: NewTrackingId);
            _committed = true;
        }

        private void EndBackup()
        {
            foreach (var d in _disks) d.Image.Dispose();
            _disks.Clear();
            Memory?.Image.Dispose();
            if (_backupRunning)
            {
                try { _domain.AbortJob(); }
                catch (LibvirtException e) { _reporter.Warning($"Ending the backup job of '{VmName}': {e.Message}"); }
                _backupRunning = false;
            }
        }

        private void RemoveOwnCheckpoints(string? keep)
        {
            foreach (var name in _domain.ListCheckpoints().Where(n => n.StartsWith(CheckpointPrefix, StringComparison.Ordinal) && n != keep).OrderBy(n => n))
            {
                try
                {
                    _domain.DeleteCheckpoint(name, metadataOnly: false);
                }
                catch (LibvirtException)
                {
                    // Its bitmap is gone with a qemu that died: only libvirt's record is left.
                    try { _domain.DeleteCheckpoint(name, metadataOnly: true); }
                    catch (LibvirtException e) { _reporter.Warning($"Checkpoint {name} of '{VmName}' could not be deleted: {e.Message}"); }
                }
            }
        }

        public void Dispose()
        {
            try
            {
                EndBackup();
                if (_overlays != null)
                {
                    var overlays = _overlays;
                    _overlays = null;
                    MergeOverlays(overlays, strict: false);
                }
                if (!_committed && _created && NewTrackingId != null && _domain.IsActive)
                {
                    // Deleting the new checkpoint merges its bitmap into its parent's: the next run stays incremental.
                    try { if (_domain.ListCheckpoints().Contains(NewTrackingId)) _domain.DeleteCheckpoint(NewTrackingId, metadataOnly: false); }
                    catch (LibvirtException e) { _reporter.Warning($"Checkpoint {NewTrackingId} of '{VmName}' is left behind: {e.Message}"); }
                }
            }
            finally
            {
                if (_workDir != null) { try { Directory.Delete(_workDir, true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
                _vmLock?.Dispose();
                _domain.Dispose();
            }
        }

    }
}
