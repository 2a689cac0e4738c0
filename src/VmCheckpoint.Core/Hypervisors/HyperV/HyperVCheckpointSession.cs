using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.HyperV
{
    /// <summary>
    /// One checkpoint of a Hyper-V VM. Hyper-V freezes the disks in a checkpoint and runs the VM on .avhdx children;
    /// the frozen parents are read with VmCheckpoint's own VHDX reader. On the RCT path (configuration version 6.2+,
    /// no memory) the checkpoint is a recovery checkpoint, only the ranges GetVirtualDiskChanges reports since the
    /// last stored checkpoint's reference point are read, and the checkpoint is converted to the next reference point.
    /// Otherwise (-IncludeMemory: a standard checkpoint with its memory; older VMs: a production checkpoint) every
    /// present block is read and only changed ones stored, and the checkpoint is removed (merged) afterwards.
    /// </summary>
    internal sealed class HyperVCheckpointSession : IVmCheckpointSession
    {
        internal const string SnapshotPrefix = "VmCheckpoint ";
        private static readonly Regex ChildSuffix = new Regex("_[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$");
        private readonly IHyperVModule _module;
        private readonly IHyperVChangeTracking? _tracking;
        private readonly IJobReporter _reporter;
        private readonly HyperVVm _vm;
        private readonly List<DiskSource> _disks = new List<DiskSource>();
        private readonly List<string> _notes = new List<string>();
        private VmRunLock? _lock;
        private HyperVSnapshot? _snapshot;
        private HyperVReferencePoint? _parentPoint;
        private HyperVReferencePoint? _carriedPoint;
        private HyperVReferencePoint? _previousPoint;
        private HyperVReferencePoint? _newPoint;
        private bool _rct;
        private bool _committed;

        private HyperVCheckpointSession(IHyperVModule module, IHyperVChangeTracking? tracking, HyperVVm vm, IJobReporter reporter)
        {
            _module = module;
            _tracking = tracking;
            _vm = vm;
            _reporter = reporter;
        }

        public string VmName => _vm.Name;
        public string? VmId => _vm.Id;
        public string Host => _module.ComputerName;
        public string Hypervisor => HypervisorNames.HyperV;
        public string? Configuration { get; private set; }
        public IReadOnlyList<DiskSource> Disks => _disks;
        public DiskSource? Memory { get; private set; }
        public string? NewTrackingId { get; private set; }
        public double PauseSeconds { get; private set; }
        public string? Note => _notes.Count == 0 ? null : string.Join(" ", _notes);

        public static HyperVCheckpointSession Begin(IHyperVModule module, IHyperVChangeTracking? tracking, string vmName, CheckpointPlan plan, IJobReporter reporter)
        {
            var vm = module.GetVm(vmName) ?? throw new VmNotFoundException($"No VM '{vmName}' on Hyper-V host {module.ComputerName}.");
            var session = new HyperVCheckpointSession(module, tracking, vm, reporter);
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

        /// <summary>A disk's name in the checkpoint: its file's base name, without the _GUID Hyper-V gives .avhdx children.</summary>
        internal static string DiskName(string path)
        {
            var name = ChildSuffix.Replace(Path.GetFileNameWithoutExtension(path.Replace('\\', '/').Split('/').Last()), "");
            DiskNames.Validate(name, path);
            return name;
        }

        private void Open(CheckpointPlan plan)
        {
            _lock = VmRunLock.Take(_vm.Id, _vm.Name);
            RemoveLeftovers();
            bool rctCapable = _tracking != null && _vm.SupportsRct;
            _rct = rctCapable && !plan.IncludeMemory;
            if (_tracking != null && !_vm.SupportsRct)
                _notes.Add($"'{VmName}' has configuration version {_vm.Version}: no Resilient Change Tracking before 6.2, so every present block was read and only changed ones stored.");
            if (rctCapable && plan.ParentTrackingId != null)
            {
                try
                {
                    _parentPoint = _tracking!.GetReferencePoints(_vm).FirstOrDefault(p => p.Id == plan.ParentTrackingId);
                    if (_parentPoint is null)
                        _notes.Add($"Reference point {plan.ParentTrackingId} of the last stored checkpoint is gone from Hyper-V: every present block was read and only changed ones stored.");
                }
                catch (HyperVException e)
                {
                    _notes.Add($"The reference points of '{VmName}' cannot be listed ({e.Message}): every present block was read and only changed ones stored.");
                }
            }
            // A checkpoint taken without RCT (with memory) reads everything, but the last reference point still holds:
            // changes since it are a superset of changes since this checkpoint, so the next run can use it.
            _previousPoint = _parentPoint;
            if (!_rct) _carriedPoint = _parentPoint;
            if (!_rct || plan.Full) _parentPoint = null;
            bool withMemory = plan.IncludeMemory && string.Equals(_vm.State, "Running", StringComparison.OrdinalIgnoreCase);
            if (plan.IncludeMemory && !withMemory)
                _reporter.Warning($"'{VmName}' is {_vm.State}, not running: its memory state cannot be taken; its disks are.");

            var clock = Stopwatch.StartNew();
            if (_rct)
            {
                try
                {
                    _snapshot = _tracking!.CreateRecoverySnapshot(_vm);
                }
                catch (HyperVException e)
                {
                    _notes.Add($"A recovery checkpoint was refused ({e.Message}); a production checkpoint was taken and every present block read.");
                    _rct = false;
                    _carriedPoint = _previousPoint;
                    _parentPoint = null;
                }
            }
            _snapshot ??= _module.CheckpointVm(_vm.Name, SnapshotPrefix + DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm:ss.fff") + "Z", withMemory);
            // A standard checkpoint pauses the VM while its memory is saved: the call is the bound of that pause.
            if (withMemory) PauseSeconds = clock.Elapsed.TotalSeconds;

            if (_snapshot.ConfigurationFile != null && File.Exists(_snapshot.ConfigurationFile))
            {
                var configuration = new HyperVConfiguration
                {
                    VmName = _vm.Name, VmId = _vm.Id, Version = _vm.Version, Generation = _vm.Generation,
                    Vmcx = File.ReadAllBytes(_snapshot.ConfigurationFile),
                };
                foreach (var drive in _snapshot.HardDrives)
                    configuration.Disks.Add(new HyperVDiskSlot { Name = DiskName(drive.Path), Slot = drive.Slot, FileName = Path.GetFileName(drive.Path) });
                Configuration = configuration.Serialize();
            }
            else
            {
                _reporter.Warning($"Checkpoint {_snapshot.Id} of '{VmName}' has no readable configuration file; the checkpoint holds its disks only.");
            }
            foreach (var drive in _snapshot.HardDrives)
            {
                var name = DiskName(drive.Path);
                if (_disks.Any(d => string.Equals(d.Name, name, StringComparison.OrdinalIgnoreCase)))
                    throw new InvalidDataException($"Two disks of '{VmName}' would be named '{name}' ({drive.Path}); give each disk file a distinct name.");
                var image = OpenFrozen(drive.Path);
                IReadOnlyList<DiskExtent>? changed = null;
                if (_parentPoint != null)
                {
                    if (!_parentPoint.RctIds.TryGetValue(drive.Path, out var rctId))
                        _notes.Add($"Disk {name} has no RCT id in reference point {_parentPoint.Id} (added since): all of it was read.");
                    else
                    {
                        // The chain heals itself: change tracking that fails or answers nonsense means reading the present blocks.
                        try { changed = ChangedRanges(drive.Path, rctId, image.VirtualSize); }
                        catch (Exception e) when (e is HyperVException || e is InvalidDataException)
                        {
                            _notes.Add($"GetVirtualDiskChanges of disk {name} failed ({e.Message}): every present block of it was read and only changed ones stored.");
                        }
                    }
                }
                _disks.Add(new DiskSource(name, image, changed, drive.Path));
            }
            if (withMemory)
            {
                if (_snapshot.MemoryStateFile is null || !File.Exists(_snapshot.MemoryStateFile))
                    throw new HyperVException($"Checkpoint {_snapshot.Id} of '{VmName}' was taken with memory but has no saved state file.");
                Memory = new DiskSource("memory", DiskImage.Open(_snapshot.MemoryStateFile, DiskFormat.Raw), null, _snapshot.MemoryStateFile);
            }
        }

        private IDiskImage OpenFrozen(string path)
        {
            try
            {
                return DiskImage.Open(path);
            }
            catch (IOException e) when (!(e is FileNotFoundException) && !(e is DirectoryNotFoundException) && !(e is CorruptImageException))
            {
                throw new VmBusyException($"Disk {path} of '{VmName}' is locked by another process ({e.Message}); try again when it is released.");
            }
        }

        /// <summary>GetVirtualDiskChanges over the whole disk: it may answer for less than asked, so ask again from where it stopped.</summary>
        private List<DiskExtent> ChangedRanges(string path, string rctId, long size)
        {
            var ranges = new List<DiskExtent>();
            long offset = 0;
            while (offset < size)
            {
                var batch = _tracking!.GetVirtualDiskChanges(path, rctId, offset, size - offset);
                if (batch.ProcessedLength <= 0) throw new HyperVException($"GetVirtualDiskChanges of {path} made no progress at offset {offset}.");
                foreach (var e in batch.Changed)
                {
                    if (e.Offset < offset || e.End > size) throw new InvalidDataException($"GetVirtualDiskChanges of {path} reported {e}, outside [{offset}, {size}).");
                    ranges.Add(e);
                }
                offset += batch.ProcessedLength;
            }
            return DiskExtents.Merge(ranges.OrderBy(r => r.Offset)).ToList();
        }

        /// <summary>Checkpoints a run of ours left behind (it died, or the host did) would pin .avhdx files for ever: merge them.</summary>
        private void RemoveLeftovers()
        {
            foreach (var s in _module.GetSnapshots(_vm.Name))
            {
                bool ours = s.Name.StartsWith(SnapshotPrefix, StringComparison.Ordinal);
                if (!ours && s.SnapshotType != "Recovery") continue;
                // A recovery checkpoint is any backup product's; it is ours to remove only when our last run died.
                if (!ours && !_lock!.PreviousRunDied)
                    throw new VmBusyException($"'{VmName}' has a recovery checkpoint '{s.Name}': another backup of it is running. Try again when it ends (or remove the checkpoint with Remove-VMSnapshot).");
                _module.RemoveSnapshot(_vm.Name, s.Id);
                _notes.Add($"Checkpoint '{s.Name}' ({s.SnapshotType}) left by an interrupted run was removed.");
            }
        }

        public string? Seal()
        {
            CloseImages();
            if (_snapshot != null)
            {
                if (_rct)
                {
                    _newPoint = _tracking!.ConvertToReferencePoint(_vm, _snapshot);
                    NewTrackingId = _newPoint.Id;
                }
                else
                {
                    _module.RemoveSnapshot(_vm.Name, _snapshot.Id);
                    NewTrackingId = _carriedPoint?.Id;
                }
                _snapshot = null;
            }
            return NewTrackingId;
        }

        public void Commit()
        {
            Seal();
            // The new reference point is the next run's parent; the old one only costs Hyper-V tracking.
            if (_previousPoint != null && _newPoint != null)
            {
                try { _tracking!.DestroyReferencePoint(_vm, _previousPoint); }
                catch (HyperVException e) { _reporter.Warning($"Reference point {_previousPoint.Id} of '{VmName}' is left behind: {e.Message}"); }
            }
            _committed = true;
        }

        private void CloseImages()
        {
            foreach (var d in _disks) d.Image.Dispose();
            _disks.Clear();
            Memory?.Image.Dispose();
            Memory = null;
        }

        public void Dispose()
        {
            try
            {
                CloseImages();
                // Nothing of a failed run stays: its checkpoint merged back, its reference point destroyed.
                if (_snapshot != null)
                {
                    try { _module.RemoveSnapshot(_vm.Name, _snapshot.Id); }
                    catch (HyperVException e) { _reporter.Warning($"Checkpoint '{_snapshot.Name}' of '{VmName}' is left behind (the next run removes it): {e.Message}"); }
                    _snapshot = null;
                }
                if (!_committed && _newPoint != null)
                {
                    try { _tracking!.DestroyReferencePoint(_vm, _newPoint); }
                    catch (HyperVException e) { _reporter.Warning($"Reference point {_newPoint.Id} of '{VmName}' is left behind: {e.Message}"); }
                }
            }
            finally
            {
                _lock?.Dispose();
            }
        }
    }
}
