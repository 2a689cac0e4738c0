using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.HyperV;

namespace VmCheckpoint.PowerShell.HyperV
{
    /// <summary>
    /// The only code that talks to Hyper-V: the Hyper-V module's commands and the CIM calls on the
    /// root\virtualization\v2 services, run in the calling cmdlet's runspace. Everything it returns is plain Core
    /// data; all decisions are <see cref="HyperVHypervisor"/>'s. On Linux the tests run it against a stand-in of the
    /// Hyper-V cmdlets and of those CIM calls (tests/HyperVStandIn), since Hyper-V itself cannot run there.
    /// </summary>
    internal sealed class HyperVRunspaceHost : IHyperVModule, IHyperVChangeTracking
    {
        // $c is null (this computer), a computer name, or a host with credentials: then the Hyper-V commands get
        // -Credential and the CIM calls one CIM session, made at the first call and kept in $c for the next ones.
        private const string Prologue = "$ErrorActionPreference = 'Stop'; $p = @{}; $cim = @{}; " +
            "if ($c -is [string]) { $p.ComputerName = $c; $cim.ComputerName = $c } " +
            "elseif ($c) { $p.ComputerName = $c.ComputerName; $p.Credential = $c.Credential; " +
            "if (-not $c.Session) { $c.Session = New-CimSession -ComputerName $c.ComputerName -Credential $c.Credential }; $cim.CimSession = $c.Session }; ";
        private const string CimPrologue = Prologue + "$w = @{ Namespace = 'root/virtualization/v2' } + $cim; " +
            // An asynchronous WMI method answers 4096 and a job; wait for it, and fail with its own words.
            "function Wait-WmiJob($r, $what) { if ($r.ReturnValue -eq 4096) { $j = $r.Job; " +
            "while ($j.JobState -in 2, 3, 4) { Start-Sleep -Milliseconds 100; $j = Get-CimInstance -InputObject $j } " +
            "if ($j.JobState -ne 7) { throw \"$what failed: $($j.ErrorDescription)\" } } " +
            "elseif ($r.ReturnValue -ne 0) { throw \"$what failed with WMI return value $($r.ReturnValue)\" } }; ";
        private readonly Func<string, object?[], Collection<PSObject>> _invoke;
        private readonly string? _computerName;
        private readonly PSObject? _remote;

        /// <param name="invoke">Runs a script block's text with arguments in the cmdlet's runspace (on its pipeline thread).</param>
        /// <param name="credential">For a remote host: the account its Hyper-V commands and CIM session use.</param>
        public HyperVRunspaceHost(Func<string, object?[], Collection<PSObject>> invoke, string? computerName, PSCredential? credential = null)
        {
            _invoke = invoke;
            _computerName = string.IsNullOrEmpty(computerName) ? null : computerName;
            ComputerName = _computerName ?? Environment.MachineName;
            if (credential != null && credential != PSCredential.Empty)
            {
                _remote = new PSObject();
                _remote.Properties.Add(new PSNoteProperty("ComputerName", ComputerName));
                _remote.Properties.Add(new PSNoteProperty("Credential", credential));
                _remote.Properties.Add(new PSNoteProperty("Session", null));
            }
        }

        public string ComputerName { get; }

        /// <summary>Whether the CIM commands exist in this runspace (they do on Windows; the stand-in adds them on Linux).</summary>
        public bool HasCim => Run("param($c) [bool](Get-Command Invoke-CimMethod -ErrorAction SilentlyContinue)").Select(o => o.BaseObject).OfType<bool>().FirstOrDefault();

        public IReadOnlyList<HyperVVm> GetVms() => Run("param($c) " + Prologue + "Get-VM @p").Select(ToVm).ToList();

        public HyperVVm? GetVm(string name)
        {
            var found = Run("param($c, $n) " + Prologue + "Get-VM @p | Where-Object Name -eq $n", name).Select(ToVm).ToList();
            if (found.Count > 1) throw new HyperVException($"{found.Count} VMs are named '{name}' on {ComputerName}; rename one.");
            return found.FirstOrDefault();
        }

        public IReadOnlyList<HyperVHardDrive> GetHardDiskDrives(string vmName) =>
            Run("param($c, $n) " + Prologue + "Get-VMHardDiskDrive @p -VMName $n", vmName).Select(ToDrive).ToList();

        public HyperVSnapshot CheckpointVm(string vmName, string snapshotName, bool withMemory)
        {
            // The checkpoint type is a VM setting: set it for this checkpoint and put the administrator's back.
            var o = Run("param($c, $n, $s, $t) " + Prologue +
                "$vm = Get-VM @p -Name $n; $before = $vm.CheckpointType; Set-VM @p -Name $n -CheckpointType $t; " +
                "try { $snap = Checkpoint-VM @p -Name $n -SnapshotName $s -Passthru } finally { Set-VM @p -Name $n -CheckpointType $before }; " +
                "[pscustomobject]@{ Snapshot = $snap; Folder = $vm.SnapshotFileLocation }",
                vmName, snapshotName, withMemory ? "Standard" : "Production").Single();
            return ToSnapshot((PSObject)o.Properties["Snapshot"].Value, o.Properties["Folder"].Value as string);
        }

        public IReadOnlyList<HyperVSnapshot> GetSnapshots(string vmName)
        {
            var rows = Run("param($c, $n) " + Prologue + "$vm = Get-VM @p -Name $n; " +
                "foreach ($s in @(Get-VMSnapshot @p -VMName $n) + @(Get-VMSnapshot @p -VMName $n -SnapshotType Recovery)) { [pscustomobject]@{ Snapshot = $s; Folder = $vm.SnapshotFileLocation } }", vmName);
            return rows.Select(o => ToSnapshot((PSObject)o.Properties["Snapshot"].Value, o.Properties["Folder"].Value as string))
                       .GroupBy(s => s.Id).Select(g => g.First()).ToList();
        }

        public void RemoveSnapshot(string vmName, string snapshotId) =>
            Run("param($c, $n, $id) " + Prologue +
                "@(Get-VMSnapshot @p -VMName $n) + @(Get-VMSnapshot @p -VMName $n -SnapshotType Recovery) | Where-Object { \"$($_.Id)\" -eq $id } | Remove-VMSnapshot", vmName, snapshotId);

        public string ImportVm(HyperVImportRequest request)
        {
            // Compare-VM gives the VM as it would be imported; its drives are pointed at the restored files before Import-VM.
            var slots = new System.Collections.Hashtable(StringComparer.OrdinalIgnoreCase);
            foreach (var kv in request.DiskPathsBySlot) slots[kv.Key] = kv.Value;
            var o = Run("param($c, $vmcx, $slots, $newName, $folder) " + Prologue +
                "$r = if ($newName) { Compare-VM @p -Path $vmcx -Copy -GenerateNewId -VirtualMachinePath $folder -SnapshotFilePath $folder -SmartPagingFilePath $folder -VhdDestinationPath $folder } " +
                "else { Compare-VM @p -Path $vmcx -Register }; " +
                "foreach ($d in $r.VM.HardDrives) { $k = \"$($d.ControllerType)$($d.ControllerNumber):$($d.ControllerLocation)\"; if ($slots.ContainsKey($k)) { Set-VMHardDiskDrive -VMHardDiskDrive $d -Path $slots[$k] } }; " +
                "$vm = Import-VM -CompatibilityReport $r; if ($newName) { Rename-VM -VM $vm -NewName $newName; $newName } else { $vm.Name }",
                request.ConfigurationFile, slots, request.NewName, request.Folder).Last();
            return o.BaseObject as string ?? o.ToString();
        }

        public void StartVm(string vmName) => Run("param($c, $n) " + Prologue + "Start-VM @p -Name $n", vmName);

        public void TurnOffVm(string vmName) => Run("param($c, $n) " + Prologue + "Stop-VM @p -Name $n -TurnOff -Force", vmName);

        public void RemoveVm(string vmName) => Run("param($c, $n) " + Prologue + "Remove-VM @p -Name $n -Force", vmName);

        // --- Msvm_VirtualSystemSnapshotService, Msvm_VirtualSystemReferencePointService, Msvm_ImageManagementService ---

        public HyperVSnapshot CreateRecoverySnapshot(HyperVVm vm)
        {
            var o = Run("param($c, $id, $n) " + CimPrologue +
                "$system = Get-CimInstance @w -ClassName Msvm_ComputerSystem -Filter \"Name='$id'\"; " +
                "$service = Get-CimInstance @w -ClassName Msvm_VirtualSystemSnapshotService; " +
                // An embedded instance goes to WMI as CIM-XML text: application-consistent (VSS in the guest), as a production checkpoint.
                "$settings = '<INSTANCE CLASSNAME=\"Msvm_VirtualSystemSnapshotSettingData\"><PROPERTY NAME=\"ConsistencyLevel\" TYPE=\"uint8\"><VALUE>1</VALUE></PROPERTY>" +
                "<PROPERTY NAME=\"IgnoreNonSnapshottableDisks\" TYPE=\"boolean\"><VALUE>TRUE</VALUE></PROPERTY></INSTANCE>'; " +
                "$r = Invoke-CimMethod -InputObject $service -MethodName CreateSnapshot -Arguments @{ AffectedSystem = $system; SnapshotSettings = $settings; SnapshotType = [uint16]32768 }; " +
                "Wait-WmiJob $r 'CreateSnapshot'; " +
                "$vm = Get-VM @p -Name $n; $s = Get-VMSnapshot @p -VMName $n -SnapshotType Recovery | Sort-Object CreationTime | Select-Object -Last 1; " +
                "[pscustomobject]@{ Snapshot = $s; Folder = $vm.SnapshotFileLocation }", vm.Id, vm.Name).Single();
            return ToSnapshot((PSObject)o.Properties["Snapshot"].Value, o.Properties["Folder"].Value as string);
        }

        public HyperVReferencePoint ConvertToReferencePoint(HyperVVm vm, HyperVSnapshot snapshot)
        {
            var o = Run("param($c, $id, $sid) " + CimPrologue +
                "$snap = Get-CimInstance @w -ClassName Msvm_VirtualSystemSettingData -Filter \"VirtualSystemIdentifier='$id' AND InstanceID='Microsoft:$sid'\"; " +
                "$service = Get-CimInstance @w -ClassName Msvm_VirtualSystemSnapshotService; " +
                "$r = Invoke-CimMethod -InputObject $service -MethodName ConvertToReferencePoint -Arguments @{ AffectedSnapshot = $snap }; " +
                "Wait-WmiJob $r 'ConvertToReferencePoint'; " +
                "$rp = if ($r.ResultingReferencePoint) { Get-CimInstance -InputObject $r.ResultingReferencePoint } else { Get-CimAssociatedInstance -InputObject $r.Job -ResultClassName Msvm_VirtualSystemReferencePoint }; $rp",
                vm.Id, snapshot.Id).Single();
            return ToReferencePoint(o, DrivesInOrder(vm.Name));
        }

        public IReadOnlyList<HyperVReferencePoint> GetReferencePoints(HyperVVm vm)
        {
            var points = Run("param($c, $id) " + CimPrologue + "Get-CimInstance @w -ClassName Msvm_VirtualSystemReferencePoint -Filter \"VirtualSystemIdentifier='$id'\"", vm.Id);
            if (points.Count == 0) return new List<HyperVReferencePoint>();
            var drives = DrivesInOrder(vm.Name);
            return points.Select(o => ToReferencePoint(o, drives)).ToList();
        }

        public void DestroyReferencePoint(HyperVVm vm, HyperVReferencePoint referencePoint) =>
            Run("param($c, $id, $rid) " + CimPrologue +
                "$rp = Get-CimInstance @w -ClassName Msvm_VirtualSystemReferencePoint -Filter \"VirtualSystemIdentifier='$id'\" | Where-Object InstanceID -eq $rid; " +
                "if ($rp) { $service = Get-CimInstance @w -ClassName Msvm_VirtualSystemReferencePointService; " +
                "$r = Invoke-CimMethod -InputObject $service -MethodName DestroyReferencePoint -Arguments @{ AffectedReferencePoint = $rp }; Wait-WmiJob $r 'DestroyReferencePoint' }",
                vm.Id, referencePoint.Id);

        public DiskChangeBatch GetVirtualDiskChanges(string path, string rctId, long offset, long length)
        {
            var o = Run("param($c, $path, $limit, $offset, $length) " + CimPrologue +
                "$service = Get-CimInstance @w -ClassName Msvm_ImageManagementService; " +
                "$r = Invoke-CimMethod -InputObject $service -MethodName GetVirtualDiskChanges -Arguments @{ Path = $path; LimitId = $limit; ByteOffset = [uint64]$offset; ByteLength = [uint64]$length }; " +
                "Wait-WmiJob $r 'GetVirtualDiskChanges'; $r", path, rctId, offset, length).Single();
            var offsets = ToLongs(o.Properties["ChangedByteOffsets"]?.Value);
            var lengths = ToLongs(o.Properties["ChangedByteLengths"]?.Value);
            if (offsets.Count != lengths.Count) throw new HyperVException($"GetVirtualDiskChanges of {path} answered {offsets.Count} offsets and {lengths.Count} lengths.");
            var batch = new DiskChangeBatch { ProcessedLength = Convert.ToInt64(o.Properties["ProcessedByteLength"]?.Value ?? 0L) };
            for (int i = 0; i < offsets.Count; i++) batch.Changed.Add(new DiskExtent(offsets[i], lengths[i]));
            return batch;
        }

        // --- conversions from the commands' objects ---

        private Collection<PSObject> Run(string script, params object?[] args)
        {
            var all = new object?[args.Length + 1];
            all[0] = (object?)_remote ?? _computerName;
            Array.Copy(args, 0, all, 1, args.Length);
            try
            {
                return _invoke(script, all);
            }
            catch (CommandNotFoundException e)
            {
                throw new HypervisorUnavailableException($"The Hyper-V module is not available here ({e.Message}): install the Hyper-V management tools, or run this on a Hyper-V host.", e);
            }
            catch (RuntimeException e) when (!(e is PipelineStoppedException))
            {
                var inner = e.ErrorRecord?.Exception is CommandNotFoundException cnf ? cnf : null;
                if (inner != null) throw new HypervisorUnavailableException($"The Hyper-V module is not available here ({inner.Message}).", inner);
                throw new HyperVException(e.ErrorRecord?.Exception?.Message ?? e.Message, e);
            }
        }

        private static string Text(PSObject o, string property) => o.Properties[property]?.Value?.ToString() ?? "";

        private HyperVVm ToVm(PSObject o) => new HyperVVm
        {
            Name = Text(o, "Name"),
            Id = Text(o, "Id"),
            State = Text(o, "State"),
            Heartbeat = o.Properties["Heartbeat"]?.Value?.ToString(),
            Version = Text(o, "Version"),
            Generation = int.TryParse(Text(o, "Generation"), out var g) ? g : 2,
        };

        private static HyperVHardDrive ToDrive(PSObject o) => new HyperVHardDrive
        {
            ControllerType = Text(o, "ControllerType"),
            ControllerNumber = int.TryParse(Text(o, "ControllerNumber"), out var n) ? n : 0,
            ControllerLocation = int.TryParse(Text(o, "ControllerLocation"), out var l) ? l : 0,
            Path = Text(o, "Path"),
        };

        /// <summary>A checkpoint's own files live in &lt;SnapshotFileLocation&gt;\Snapshots\&lt;Id&gt;.vmcx (and .vmrs with memory).</summary>
        private static HyperVSnapshot ToSnapshot(PSObject o, string? folder)
        {
            var s = new HyperVSnapshot
            {
                Id = Text(o, "Id"),
                Name = Text(o, "Name"),
                SnapshotType = Text(o, "SnapshotType"),
                HardDrives = (o.Properties["HardDrives"]?.Value as System.Collections.IEnumerable)?.Cast<object>()
                    .Select(d => ToDrive(PSObject.AsPSObject(d))).ToList() ?? new List<HyperVHardDrive>(),
            };
            if (!string.IsNullOrEmpty(folder))
            {
                var config = System.IO.Path.Combine(folder, "Snapshots", s.Id.ToUpperInvariant() + ".vmcx");
                if (!System.IO.File.Exists(config)) config = System.IO.Path.Combine(folder, "Snapshots", s.Id + ".vmcx");
                s.ConfigurationFile = config;
                var memory = System.IO.Path.ChangeExtension(config, ".vmrs");
                if (System.IO.File.Exists(memory)) s.MemoryStateFile = memory;
            }
            return s;
        }

        /// <summary>
        /// ResilientChangeTrackingIdentifiers holds one id per virtual disk; the disks are matched to them in the order
        /// of the VM's drives (by controller and location), which is the order Hyper-V lists them.
        /// </summary>
        private List<HyperVHardDrive> DrivesInOrder(string vmName) =>
            GetHardDiskDrives(vmName).OrderBy(d => d.ControllerType, StringComparer.OrdinalIgnoreCase).ThenBy(d => d.ControllerNumber).ThenBy(d => d.ControllerLocation).ToList();

        private static HyperVReferencePoint ToReferencePoint(PSObject o, List<HyperVHardDrive> drives)
        {
            var point = new HyperVReferencePoint { Id = Text(o, "InstanceID") };
            var ids = (o.Properties["ResilientChangeTrackingIdentifiers"]?.Value as System.Collections.IEnumerable)?.Cast<object>().Select(x => x.ToString()!).ToList() ?? new List<string>();
            for (int i = 0; i < Math.Min(ids.Count, drives.Count); i++) point.RctIds[drives[i].Path] = ids[i];
            return point;
        }

        private static List<long> ToLongs(object? value) =>
            (PSObject.AsPSObject(value ?? new object[0]).BaseObject as System.Collections.IEnumerable)?.Cast<object>()
                .Select(x => Convert.ToInt64(PSObject.AsPSObject(x).BaseObject)).ToList() ?? new List<long>();
    }
}
