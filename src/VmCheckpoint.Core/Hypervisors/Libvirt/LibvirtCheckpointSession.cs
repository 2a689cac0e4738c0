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
                _domain.AbortJob();
                _notes.Add("A backup job left by an interrupted run was ended.");
            }
            var disks = DomainXml.Disks(_domain.GetXml());
            var checkpoints = _domain.ListCheckpoints();
            string? parent = plan.ParentTrackingId;
            bool incremental = !plan.Full && parent != null && checkpoints.Contains(parent);
            if (!plan.Full && parent != null && !incremental)
                _notes.Add($"Checkpoint {parent} of the last stored checkpoint is gone from libvirt: every allocated block was read and only changed ones stored.");

            _workDir = PrivateFolder.Create("vmcheckpoint-"); // qemu creates the NBD socket and scratch files here
            string socket = Path.Combine(_workDir, "nbd.sock");
            NewTrackingId = CheckpointPrefix + DateTime.UtcNow.ToString("yyyyMMddHHmmssfff") + "-" + Guid.NewGuid().ToString("N").Substring(0, 4);
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
            if (stateFile != null) Memory = new DiskSource("memory", DiskImage.Open(stateFile), null, stateFile);
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
                var image = DiskImage.Open(disk.SourceFile, new BackingChain(), null, disk.IsQcow2 ? DiskFormat.Qcow2 : DiskFormat.Raw);
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
