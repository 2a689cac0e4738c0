using System.Collections.Generic;
using System.IO;
using System.Linq;
using System;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.HyperV
{
    /// <summary>
    /// Hyper-V through its PowerShell module (<see cref="IHyperVModule"/>) and, for Resilient Change Tracking, its WMI
    /// services (<see cref="IHyperVChangeTracking"/>). Everything here is the provider's logic; the two seams are the
    /// only code that talks to Hyper-V itself.
    /// </summary>
    public sealed class HyperVHypervisor : IHypervisor
    {
        private readonly IHyperVModule _module;
        private readonly IHyperVChangeTracking? _tracking;

        /// <param name="tracking">The WMI change-tracking services; null where they cannot be reached (every present block is then read).</param>
        public HyperVHypervisor(IHyperVModule module, IHyperVChangeTracking? tracking)
        {
            _module = module;
            _tracking = tracking;
        }

        public string Name => HypervisorNames.HyperV;
        public string Host => _module.ComputerName;
        public DiskFormat PreferredDiskFormat => DiskFormat.Vhdx;

        public IReadOnlyList<string> ListVms() => _module.GetVms().Select(v => v.Name).OrderBy(n => n, StringComparer.OrdinalIgnoreCase).ToList();

        public bool VmExists(string name) => _module.GetVm(name) != null;

        /// <summary>
        /// Hyper-V's VM states and heartbeat, mapped: the *Critical states are a VM that lost its storage or its worker
        /// process (PausedCritical: paused on a storage error); a running VM whose heartbeat is LostCommunication has a
        /// guest that stopped answering; Off is a VM someone turned off, never a crash.
        /// </summary>
        public VmCondition GetCondition(string name)
        {
            var vm = _module.GetVm(name);
            if (vm is null) return new VmCondition(VmConditionKind.Missing, $"no VM '{name}' on Hyper-V host {Host}");
            return Classify(vm.State, vm.Heartbeat);
        }

        internal static VmCondition Classify(string state, string? heartbeat)
        {
            if (string.Equals(state, "PausedCritical", StringComparison.OrdinalIgnoreCase))
                return new VmCondition(VmConditionKind.PausedOnError, "paused critical (a storage error)");
            if (state.EndsWith("Critical", StringComparison.OrdinalIgnoreCase))
                return new VmCondition(VmConditionKind.Crashed, $"{state} (its storage or worker process failed)");
            switch (state)
            {
                case "Running":
                    return string.Equals(heartbeat, "LostCommunication", StringComparison.OrdinalIgnoreCase)
                        ? new VmCondition(VmConditionKind.Unresponsive, "running, heartbeat lost: the guest stopped answering")
                        : new VmCondition(VmConditionKind.Running, "running");
                case "Off":
                    return new VmCondition(VmConditionKind.Stopped, "off");
                default:
                    return new VmCondition(VmConditionKind.Paused, state.ToLowerInvariant());
            }
        }

        /// <summary>Hyper-V has no lifecycle events for the module to subscribe to here: the watcher polls.</summary>
        public IDisposable? SubscribeToStateChanges(Action<string> changed) => null;

        public IReadOnlyList<string> ChangeTracking(string vmName, bool remove)
        {
            var vm = _module.GetVm(vmName) ?? throw new VmNotFoundException($"No VM '{vmName}' on {Host}.");
            var found = new List<string>();
            if (_tracking is null) return found; // without the CIM calls, no reference point was ever made
            foreach (var point in _tracking.GetReferencePoints(vm))
            {
                found.Add($"Hyper-V reference point {point.Id} of '{vmName}'");
                if (remove) _tracking.DestroyReferencePoint(vm, point);
            }
            return found;
        }

        public void StartVm(string name) => _module.StartVm(name);

        public void StopVm(string name) => _module.TurnOffVm(name);

        public IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter)
            => HyperVCheckpointSession.Begin(_module, _tracking, vmName, plan, reporter);

        /// <summary>
        /// Imports the VM from its checkpoint's .vmcx (written beside the restored disks, under "Virtual Machines"),
        /// its drives pointed at the restored disks; a saved memory state (.vmrs) beside it makes the imported VM
        /// Saved, and starting it resumes where the checkpoint was taken.
        /// </summary>
        public void CheckRegistration(string vmName, string configuration, string? newName, bool resumeMemory)
        {
            if (!HyperVConfiguration.IsHyperV(configuration))
                throw new NotSupportedException($"The checkpoint of '{vmName}' was not taken on Hyper-V: restore its disks (Restore-VmCheckpoint -DiskFormat vhdx without -Register) and create the VM from them.");
        }

        public string Register(RegistrationRequest request, IJobReporter reporter)
        {
            CheckRegistration(request.VmName, request.Configuration, request.NewName, request.MemoryStateFile != null);
            var configuration = HyperVConfiguration.Parse(request.Configuration, request.VmName);
            if (request.Disks.Count == 0) throw new ArgumentException("A Hyper-V VM is registered with its restored disks.");
            string folder = Path.GetDirectoryName(request.Disks[0].Path)!;
            string name = request.NewName ?? request.VmName;
            var byName = request.Disks.ToDictionary(d => d.Name, StringComparer.OrdinalIgnoreCase);
            var slots = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var disk in configuration.Disks)
            {
                if (byName.TryGetValue(disk.Name, out var restored))
                {
                    if (restored.Format != DiskFormat.Vhdx) throw new ArgumentException($"Hyper-V runs VHDX disks: restore '{disk.Name}' with -DiskFormat vhdx.");
                    slots[disk.Slot] = restored.Path;
                }
            }

            var existing = _module.GetVm(name);
            if (existing != null)
            {
                if (!request.Force) throw new TargetExistsException($"VM '{name}' on Hyper-V host {Host}");
                reporter.Verbose($"Replacing the existing VM '{name}' on {Host}.");
                if (existing.State != "Off") _module.TurnOffVm(name);
                _module.RemoveVm(name);
            }

            var vmFolder = Path.Combine(folder, "Virtual Machines");
            Directory.CreateDirectory(vmFolder);
            var vmcx = Path.Combine(vmFolder, configuration.VmId + ".vmcx");
            var vmrs = Path.ChangeExtension(vmcx, ".vmrs");
            File.WriteAllBytes(vmcx, configuration.Vmcx);
            string? imported = null;
            try
            {
                if (request.MemoryStateFile != null)
                {
                    if (File.Exists(vmrs)) File.Delete(vmrs);
                    File.Move(request.MemoryStateFile, vmrs);
                }
                imported = _module.ImportVm(new HyperVImportRequest(vmcx, slots) { NewName = request.NewName, Folder = folder });
                if (request.MemoryStateFile != null)
                {
                    _module.StartVm(imported);
                    reporter.Verbose($"Resumed '{imported}' on {Host} from its saved memory state.");
                }
                else if (request.Start)
                {
                    _module.StartVm(imported);
                    reporter.Verbose($"Started '{imported}' on {Host}.");
                }
                return imported;
            }
            catch
            {
                // A failed restore leaves no half-imported VM.
                if (imported != null)
                {
                    try { _module.TurnOffVm(imported); } catch (HyperVException) { }
                    try { _module.RemoveVm(imported); } catch (HyperVException) { }
                }
                try { Directory.Delete(vmFolder, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
                throw;
            }
        }

        public void Dispose() { }
    }
}
