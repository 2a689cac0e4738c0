using System.Collections.Generic;
using System.IO;
using System.Linq;
using System;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>libvirt/KVM through the libvirt C API and NBD pull backups.</summary>
    public sealed class LibvirtHypervisor : IHypervisor, IBackgroundCopyHost, IBootTestHost
    {
        private readonly LibvirtConnection _connection;

        public LibvirtHypervisor(string? uri)
        {
            _connection = LibvirtConnection.Open(uri);
        }

        public string Name => HypervisorNames.Libvirt;
        public string Uri => _connection.Uri;
        public string Host => _connection.Hostname;
        internal LibvirtConnection Connection => _connection;

        public IReadOnlyList<string> ListVms()
        {
            var domains = _connection.ListDomains();
            try { return domains.Select(d => d.Name).OrderBy(n => n, StringComparer.OrdinalIgnoreCase).ToList(); }
            finally { foreach (var d in domains) d.Dispose(); }
        }

        public bool VmExists(string name)
        {
            using var d = _connection.FindDomain(name);
            return d != null;
        }

        /// <summary>
        /// How long the guest agent may take to answer guest-ping before the guest counts as unresponsive. libvirt bounds
        /// its guest-sync by the same number; a healthy agent answers in milliseconds, and only a VM with a connected
        /// agent ever waits this long.
        /// </summary>
        internal const int AgentTimeoutSeconds = 3;
        private const string GuestPing = "{\"execute\":\"guest-ping\"}";

        public VmCondition GetCondition(string name)
        {
            using var d = _connection.FindDomain(name);
            if (d is null) return Missing(name);
            var condition = StateCondition(d.State);
            if (condition.Kind != VmConditionKind.Running) return condition;
            return ProbeGuestAgent(d, name) ?? condition;
        }

        private VmCondition Missing(string name) => new VmCondition(VmConditionKind.Missing, $"no domain '{name}' on {Uri}");

        /// <summary>
        /// Pings the guest agent of a running domain. Only an agent that holds its port open is asked: no channel, or
        /// nobody at the guest end of it, says nothing about the guest (null: the state stands).
        /// </summary>
        private VmCondition? ProbeGuestAgent(LibvirtDomain d, string name)
        {
            if (DomainXml.GuestAgent(d.GetXml()) != GuestAgentChannel.Connected) return null;
            try
            {
                d.AgentCommand(GuestPing, AgentTimeoutSeconds);
                return new VmCondition(VmConditionKind.Running, "running; its guest agent answers");
            }
            catch (LibvirtException e) when (e.Code == LibvirtNative.ErrNoDomain)
            {
                return Missing(name);
            }
            catch (LibvirtException e) when (e.Code == LibvirtNative.ErrOperationInvalid)
            {
                // It stopped between reading its state and the ping: what it is now, not a silent guest.
                return StateCondition(d.State);
            }
            catch (LibvirtException e)
            {
                return new VmCondition(VmConditionKind.Unresponsive, $"{e.Message} (libvirt error {e.Code})");
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                // A libvirt build without its QEMU library cannot probe agents; the state is all there is.
                return null;
            }
        }

        private static VmCondition StateCondition((int State, int Reason) s)
        {
            var (state, reason) = s;
            switch (state)
            {
                case LibvirtNative.StateRunning:
                case LibvirtNative.StateBlocked:
                    return new VmCondition(VmConditionKind.Running, "running");
                case LibvirtNative.StatePaused:
                    return reason == LibvirtNative.PausedIoError
                        ? new VmCondition(VmConditionKind.PausedOnError, "paused on a disk I/O error")
                        : new VmCondition(VmConditionKind.Paused, $"paused (reason {reason})");
                case LibvirtNative.StateCrashed:
                    return new VmCondition(VmConditionKind.Crashed, "crashed");
                case LibvirtNative.StateShutoff:
                    return reason == LibvirtNative.ShutoffCrashed ? new VmCondition(VmConditionKind.Crashed, "shut off (crashed)")
                         : reason == LibvirtNative.ShutoffFailed ? new VmCondition(VmConditionKind.Crashed, "shut off (failed to start)")
                         : new VmCondition(VmConditionKind.Stopped, $"shut off ({ShutoffReason(reason)})");
                default:
                    return new VmCondition(VmConditionKind.Paused, $"state {state}, reason {reason}");
            }
        }

        private static string ShutoffReason(int reason) => reason switch
        {
            1 => "shutdown",
            2 => "destroyed",
            4 => "migrated",
            5 => "saved",
            7 => "from snapshot",
            _ => "reason " + reason,
        };

        public IDisposable? SubscribeToStateChanges(Action<string> changed) => LibvirtEvents.Subscribe(Uri, changed);

        public IReadOnlyList<string> ChangeTracking(string vmName, bool remove)
        {
            using var d = _connection.FindDomain(vmName) ?? throw new VmNotFoundException($"No domain '{vmName}' on {Uri}.");
            var found = new List<string>();
            // Newest first: deleting a checkpoint that has no child drops its bitmap instead of merging it into another.
            foreach (var name in d.ListCheckpoints().Where(n => n.StartsWith(LibvirtCheckpointSession.CheckpointPrefix, StringComparison.Ordinal))
                         .OrderByDescending(n => n, StringComparer.Ordinal))
            {
                found.Add($"libvirt checkpoint {name} of '{vmName}'");
                if (!remove) continue;
                try { d.DeleteCheckpoint(name, metadataOnly: false); }
                catch (LibvirtException)
                {
                    // A bitmap qemu lost (kill -9) or broke cannot be merged or deleted: libvirt's record goes alone.
                    d.DeleteCheckpoint(name, metadataOnly: true);
                }
            }
            // A shut-off domain's qcow2 files may still hold bitmaps of checkpoints libvirt forgot (a crash between
            // the two); a running one's belong to qemu until it stops.
            if (!d.IsActive)
            {
                var files = DomainXml.Disks(d.GetXml(inactive: true))
                    .Where(x => x.Type == "file" && x.DriverType == "qcow2" && x.SourceFile != null && File.Exists(x.SourceFile))
                    .Select(x => x.SourceFile!);
                found.AddRange(ImageFiles.ImageFileSource.ChangeTracking(files, remove, LibvirtCheckpointSession.CheckpointPrefix));
            }
            return found;
        }

        public void StartVm(string name)
        {
            using var d = _connection.GetDomain(name);
            d.Start();
        }

        public void StopVm(string name)
        {
            using var d = _connection.GetDomain(name);
            if (d.IsActive) d.Destroy();
        }

        public DiskFormat PreferredDiskFormat => DiskFormat.Qcow2;

        public IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter)
            => LibvirtCheckpointSession.Begin(this, vmName, plan, reporter);

        public void CheckRegistration(string vmName, string configuration, string? newName, bool resumeMemory)
        {
            if (Hypervisors.HyperV.HyperVConfiguration.IsHyperV(configuration))
                throw new NotSupportedException($"The checkpoint of '{vmName}' was taken on Hyper-V: restore its disks (Restore-VmCheckpoint -DiskFormat qcow2 without -Register) and define the domain from them.");
        }

        /// <summary>A "new" name equal to the VM's own is no rename: its UUID stays, and its memory state can resume.</summary>
        private static bool IsRename(string configuration, string? newName) => newName != null && newName != DomainXml.Name(configuration);

        public string Register(RegistrationRequest request, IJobReporter reporter)
        {
            CheckRegistration(request.VmName, request.Configuration, request.NewName, request.MemoryStateFile != null);
            string? newName = IsRename(request.Configuration, request.NewName) ? request.NewName : null;
            string name = newName ?? request.VmName;
            string xml = DomainXml.ForRestore(request.Configuration, request.Disks, newName);
            using (var existing = _connection.FindDomain(name))
            {
                if (existing != null)
                {
                    if (!request.Force) throw new TargetExistsException($"domain '{name}' on {Uri}");
                    reporter.Verbose($"Replacing the existing domain '{name}' on {Uri}.");
                    if (existing.IsActive) existing.Destroy();
                    existing.Undefine();
                }
            }
            LibvirtDomain? defined = null;
            try
            {
                defined = _connection.Define(xml);
                if (request.MemoryStateFile != null)
                {
                    // QEMU's stream is put back together from its pages, and the domain XML it carries is rewritten as the
                    // definition was (disks at the restored files; for a copy a new name, UUID, MACs and files of its own).
                    // libvirt compares an XML given at restore with the saved one and refuses another name; one inside
                    // the file is the domain's own.
                    var clock = System.Diagnostics.Stopwatch.StartNew();
                    if (request.MemoryStatePrepared)
                    {
                        if (newName != null) throw new InvalidOperationException("A memory state prepared ahead is for the VM under its own name, not for a copy.");
                    }
                    else
                    {
                        string definedXml = defined.GetXml(inactive: true);
                        SavedState.SavedStateImage.Rebuild(request.MemoryStateFile,
                            saved => newName is null ? DomainXml.ForRestore(saved, request.Disks, null) : DomainXml.AdoptIdentity(DomainXml.ForRestore(saved, request.Disks, newName), definedXml));
                    }
                    var rebuilt = clock.Elapsed;
                    _connection.RestoreSaved(request.MemoryStateFile, null, paused: false);
                    reporter.Verbose($"Resumed '{name}' on {Uri} from its saved memory state (stream rebuilt {(request.MemoryStatePrepared ? "ahead" : $"in {rebuilt.TotalSeconds:0.00} s")}, libvirt's restore {(clock.Elapsed - rebuilt).TotalSeconds:0.00} s).");
                }
                else if (request.Start)
                {
                    defined.Start();
                    reporter.Verbose($"Started '{name}' on {Uri}.");
                }
                return name;
            }
            catch
            {
                // A failed restore leaves no half-defined domain.
                if (defined != null)
                {
                    try { if (defined.IsActive) defined.Destroy(); } catch (LibvirtException) { }
                    try { defined.Undefine(); } catch (LibvirtException) { }
                }
                throw;
            }
            finally
            {
                defined?.Dispose();
            }
        }

        public void PrepareMemoryState(string memoryStateFile, IReadOnlyList<RegisteredDisk> disks) =>
            SavedState.SavedStateImage.Rebuild(memoryStateFile, saved => DomainXml.ForRestore(saved, disks, null));

        public void StartBackgroundCopy(string vmName, string disk)
        {
            using var domain = _connection.FindDomain(vmName) ?? throw new VmNotFoundException($"VM '{vmName}' is not defined on {Uri}.");
            domain.StartPull(disk);
        }

        public BackgroundCopyState? GetBackgroundCopy(string vmName, string disk)
        {
            using var domain = _connection.FindDomain(vmName);
            if (domain is null || !domain.IsActive) return null;
            var (running, done, total) = domain.BlockJob(disk);
            return new BackgroundCopyState { Running = running, BytesDone = done, BytesTotal = total, HasBackingStore = DomainXml.HasBackingStore(domain.GetXml(), disk) };
        }

        public bool HasGuestAgentChannel(string configuration) => DomainXml.GuestAgent(configuration) != GuestAgentChannel.None;

        public IIsolatedVm StartIsolated(IsolatedBootRequest request, IJobReporter reporter) => LibvirtIsolatedVm.Start(_connection, request, reporter);

        public void Dispose() => _connection.Dispose();
    }
}
