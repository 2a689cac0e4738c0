using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using LiteDB;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Exports;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>A disk of an instant restore: the local overlay the VM runs on, backed by an export until its data is home.</summary>
    public sealed class InstantDisk
    {
        public string Name { get; set; } = "";
        public string Path { get; set; } = "";
        public long VirtualSize { get; set; }
        public bool Home { get; set; }
    }

    /// <summary>An instant restore whose data is not all home yet: kept under the runtime folder until it is.</summary>
    public sealed class InstantRestoreState
    {
        public string VmName { get; set; } = "";
        public string Hypervisor { get; set; } = "";
        public string? HostLocation { get; set; }
        public string CheckpointId { get; set; } = "";
        public string RepositoryPath { get; set; } = "";
        public string JobId { get; set; } = "";
        public string ServerFolderName { get; set; } = "";
        public int ServerProcessId { get; set; }
        public string Destination { get; set; } = "";
        public DateTime Started { get; set; }
        public List<InstantDisk> Disks { get; set; } = new List<InstantDisk>();
    }

    /// <summary>
    /// Instant restore: the VM runs at once on local qcow2 overlays whose backing store is the checkpoint's export
    /// (qemu's own NBD client reads what the overlay does not hold, each block checked against its hash by the export
    /// server), and libvirt's block pull moves the data into the overlays while the guest runs. When every disk is home,
    /// the export server stops. The copy is a job of the catalog (Running, bytes done) until then; <see cref="Finish"/>,
    /// called by the next run of the module and by the health watcher, follows it and completes one that a crash or a
    /// restart interrupted: a running VM's pull is started again, a stopped VM's overlays are completed offline
    /// (qemu-img rebase onto nothing copies the backing data in).
    /// </summary>
    public sealed class InstantRestoreJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog _catalog;
        private readonly IHypervisor _hypervisor;
        private readonly IJobReporter _reporter;

        public InstantRestoreJob(CheckpointRepository repository, CheckpointCatalog catalog, IHypervisor hypervisor, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _hypervisor = hypervisor;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public static bool Supports(IHypervisor hypervisor) => hypervisor is IBackgroundCopyHost;

        public static string StateRoot => System.IO.Path.Combine(ExportServers.RuntimeRoot, "instant");

        public VmRestoreResult Run(RestoreRequest request, string? hostLocation, bool resumeMemory, CancellationToken cancellationToken = default)
        {
            if (!(_hypervisor is IBackgroundCopyHost copier))
                throw new NotSupportedException($"{_hypervisor.Name} cannot run a VM from the repository while its data is copied home: restore without -Instant.");
            var manifest = _repository.ReadCheckpoint(request.Checkpoint);
            if (string.IsNullOrEmpty(manifest.Configuration))
                throw new InvalidOperationException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no VM configuration (it was taken from disk files): mount it (Mount-VmCheckpoint) or restore its disks instead.");
            if (resumeMemory && manifest.Memory is null)
                throw new InvalidOperationException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no memory state (take checkpoints with -IncludeMemory), so it cannot resume: restore it without -ResumeMemory to boot it.");
            _hypervisor.CheckRegistration(manifest.VmName, manifest.Configuration!, null, resumeMemory);
            string name = manifest.VmName;
            if (!request.Force && _hypervisor.VmExists(name)) throw new TargetExistsException($"VM '{name}' on {_hypervisor.Host}");
            var statePath = StatePath(name);
            if (File.Exists(statePath))
            {
                var earlier = Load(statePath);
                if (!request.Force)
                    throw new TargetExistsException(name, $"An instant restore of '{name}' (checkpoint {earlier.CheckpointId}) is still copying its data home: wait for it (Get-VmCheckpointJob), or use -Force to replace it.");
                Abandon(earlier);
            }
            var disks = manifest.Disks.Where(d => request.DiskNames is null || request.DiskNames.Contains(d.Name, StringComparer.OrdinalIgnoreCase)).ToList();
            string destination = System.IO.Path.GetFullPath(request.Destination);
            Directory.CreateDirectory(destination);
            var targets = disks.Select(d => System.IO.Path.Combine(destination, d.Name + ".qcow2")).ToList();
            FileUsers.EnsureNotInUse(targets, writersOnly: false, (target, user) => $"{target} is held by {user}: stop it first, or restore into another folder.");
            if (!request.Force && targets.FirstOrDefault(File.Exists) is { } existing) throw new TargetExistsException(existing);

            var job = _catalog.StartJob("InstantRestore", name, _repository);
            job.CheckpointId = manifest.Id;
            var state = new InstantRestoreState
            {
                VmName = name, Hypervisor = _hypervisor.Name, HostLocation = hostLocation, CheckpointId = manifest.Id,
                RepositoryPath = _repository.Path, JobId = job.Id!.ToString(), ServerFolderName = "instant-" + Hex.Random(8),
                Destination = destination, Started = DateTime.UtcNow,
            };
            ExportServerInfo? server = null;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            try
            {
                _reporter.Progress("Instant restore", $"{name}: serving checkpoint {manifest.Id}", 5);
                string? memoryFile = null;
                // The memory state is written while the export server starts: neither needs the other.
                server = ExportServers.Start(new ExportServerRequest(_repository, manifest, "InstantRestore")
                {
                    DiskNames = disks.Select(d => d.Name).ToList(),
                    OpenToOtherUsers = true,
                    FolderName = state.ServerFolderName,
                }, resumeMemory ? () =>
                {
                    var memory = new RestoreJob(_repository, null, _reporter).Run(new RestoreRequest(request.Checkpoint, destination)
                    {
                        DiskNames = Array.Empty<string>(), IncludeMemory = true, Force = true,
                    }, cancellationToken);
                    memoryFile = memory.Single().Path;
                    // QEMU's stream is rebuilt now too (for the overlays' paths, known already), not after the define.
                    copier.PrepareMemoryState(memoryFile, disks.Zip(targets, (d, t) => new RegisteredDisk(d.Name, t, DiskFormat.Qcow2)).ToList());
                    _reporter.Verbose($"{name}: memory state written after {clock.Elapsed.TotalSeconds:0.00} s");
                } : (Action?)null);
                _reporter.Verbose($"{name}: export server {server.ProcessId} listening after {clock.Elapsed.TotalSeconds:0.00} s");
                state.ServerProcessId = server.ProcessId;
                foreach (var (disk, target) in disks.Zip(targets, (d, t) => (d, t)))
                {
                    var uri = server.Disks.Single(d => d.Name == disk.Name).Uri;
                    if (File.Exists(target)) File.Delete(target);
                    HostCommand.Run("qemu-img", "create", "-q", "-u", "-f", "qcow2", "-b", uri, "-F", "raw", target, disk.VirtualSize.ToString(System.Globalization.CultureInfo.InvariantCulture))
                        .EnsureSucceeded($"The overlay of disk {disk.Name} of '{name}'");
                    state.Disks.Add(new InstantDisk { Name = disk.Name, Path = target, VirtualSize = disk.VirtualSize });
                }
                Save(state);
                _reporter.Verbose($"{name}: overlays created after {clock.Elapsed.TotalSeconds:0.00} s");
                _reporter.Progress("Instant restore", $"{name}: starting it on {_hypervisor.Host}", 60);
                _hypervisor.Register(new RegistrationRequest(manifest.VmName, manifest.Configuration!,
                    state.Disks.Select(d => new RegisteredDisk(d.Name, d.Path, DiskFormat.Qcow2)).ToList())
                {
                    Force = request.Force,
                    Start = true,
                    MemoryStateFile = memoryFile,
                    MemoryStatePrepared = memoryFile != null,
                }, _reporter);
                _reporter.Verbose($"{name}: {(memoryFile != null ? "resumed" : "started")} after {clock.Elapsed.TotalSeconds:0.00} s");
                if (memoryFile != null) TryDelete(memoryFile);
                foreach (var d in state.Disks) copier.StartBackgroundCopy(name, d.Name);
                job.BytesDone = 0;
                job.BytesTotal = state.Disks.Sum(d => d.VirtualSize);
                job.Message = $"Running from the repository; copying {state.Disks.Count} disk(s) into {destination}.";
                _catalog.UpdateJob(job);
                _reporter.Verbose($"'{name}' runs from checkpoint {manifest.Id}; its data is being copied into {destination} (Get-VmCheckpointJob shows the copy).");
            }
            catch (Exception e)
            {
                if (server != null) ExportServers.Stop(server);
                TryDelete(statePath);
                foreach (var d in state.Disks) TryDelete(d.Path);
                _catalog.FinishJob(job, e is OperationCanceledException ? JobResult.Cancelled : JobResult.Failed, e.Message);
                throw;
            }
            return new VmRestoreResult
            {
                VmName = name, CheckpointId = manifest.Id, Host = _hypervisor.Host, Registered = true, Started = true, ResumedFromMemory = resumeMemory,
                Instant = true,
                Disks = state.Disks.Select(d => new RestoredDisk { Name = d.Name, Path = d.Path, FormatKind = DiskFormat.Qcow2, VirtualSize = d.VirtualSize }).ToList(),
            };
        }

        /// <summary>The instant restores of this host whose data is not all home yet.</summary>
        public static IReadOnlyList<InstantRestoreState> Pending()
        {
            if (!Directory.Exists(StateRoot)) return Array.Empty<InstantRestoreState>();
            var result = new List<InstantRestoreState>();
            foreach (var f in Directory.GetFiles(StateRoot, "*.json"))
            {
                try { result.Add(Load(f)); } catch (InvalidDataException) { }
            }
            return result;
        }

        /// <summary>
        /// Follows every pending instant restore on <paramref name="connect"/>'s hosts: records bytes done; starts again a
        /// pull that is gone with data still behind (a restart of the VM, of libvirt or of the host); completes offline
        /// the disks of a VM that no longer runs; and once every disk is home stops the export server and ends the job.
        /// Returns the restores that are done.
        /// </summary>
        /// <param name="secret">A password to try on an encrypted repository whose export server must start again, when this process has not unlocked it and the environment's does not open it.</param>
        public static IReadOnlyList<InstantRestoreState> Finish(CheckpointCatalog catalog, Func<string, string?, IHypervisor> connect, IJobReporter? reporter = null, bool wait = false,
            CancellationToken cancellationToken = default, Security.RepositorySecret? secret = null)
        {
            reporter ??= NullJobReporter.Instance;
            var done = new List<InstantRestoreState>();
            foreach (var state in Pending())
            {
                try
                {
                    if (FinishOne(state, catalog, connect, reporter, wait, cancellationToken, secret)) done.Add(state);
                }
                catch (Exception e) when (!(e is OperationCanceledException))
                {
                    reporter.Warning($"The instant restore of '{state.VmName}' could not be followed: {e.Message}");
                }
            }
            return done;
        }

        private static bool FinishOne(InstantRestoreState state, CheckpointCatalog catalog, Func<string, string?, IHypervisor> connect, IJobReporter reporter, bool wait, CancellationToken cancellationToken, Security.RepositorySecret? secret)
        {
            var job = catalog.FindJob(state.JobId);
            if (state.Disks.FirstOrDefault(d => !d.Home && !File.Exists(d.Path)) is { } gone)
            {
                // Its overlays were deleted (the VM removed with its files): there is nothing left to copy into.
                StopServer(state);
                if (job != null && job.Outcome == JobResult.Running)
                    catalog.FinishJob(job, JobResult.Failed, $"{gone.Path} is gone: the copy of '{state.VmName}' was abandoned.");
                TryDelete(StatePath(state.VmName));
                return false;
            }
            using var hypervisor = connect(state.Hypervisor, state.HostLocation);
            var copier = (IBackgroundCopyHost)hypervisor;
            while (true)
            {
                long doneBytes = 0;
                bool stopped = false;
                foreach (var disk in state.Disks.Where(d => !d.Home))
                {
                    var copy = copier.GetBackgroundCopy(state.VmName, disk.Name);
                    if (copy is null) { stopped = true; break; }
                    if (!copy.HasBackingStore && !copy.Running) { disk.Home = true; continue; }
                    if (!copy.Running)
                    {
                        reporter.Verbose($"The copy of disk {disk.Name} of '{state.VmName}' had stopped with data still in the repository: starting it again.");
                        EnsureServer(state, secret);
                        copier.StartBackgroundCopy(state.VmName, disk.Name);
                    }
                    else doneBytes += copy.BytesDone;
                }
                if (stopped)
                {
                    // The VM does not run: nothing reads the overlays, so they are completed here.
                    EnsureServer(state, secret);
                    foreach (var disk in state.Disks.Where(d => !d.Home))
                    {
                        reporter.Verbose($"'{state.VmName}' does not run: copying the rest of disk {disk.Name} into {disk.Path} offline.");
                        HostCommand.Run("qemu-img", new[] { "rebase", "-f", "qcow2", "-b", "", disk.Path }, TimeSpan.FromHours(12))
                            .EnsureSucceeded($"Completing disk {disk.Name} of '{state.VmName}'");
                        disk.Home = true;
                    }
                }
                long homeBytes = state.Disks.Where(d => d.Home).Sum(d => d.VirtualSize);
                if (job != null)
                {
                    job.BytesDone = homeBytes + doneBytes;
                    job.BytesTotal = state.Disks.Sum(d => d.VirtualSize);
                }
                if (state.Disks.All(d => d.Home))
                {
                    StopServer(state);
                    if (job != null)
                        catalog.FinishJob(job, JobResult.Succeeded, message: $"'{state.VmName}' runs from {string.Join(", ", state.Disks.Select(d => d.Path))} only; the copy took {(DateTime.UtcNow - state.Started).TotalSeconds:0.0} s.");
                    TryDelete(StatePath(state.VmName));
                    return true;
                }
                Save(state);
                if (job != null) catalog.UpdateJob(job);
                if (!wait) return false;
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(200));
                cancellationToken.ThrowIfCancellationRequested();
            }
        }

        /// <summary>The export server of a restore, started again at its folder when it is gone (a host restart).</summary>
        private static void EnsureServer(InstantRestoreState state, Security.RepositorySecret? secret)
        {
            var running = ExportServers.List().FirstOrDefault(s => System.IO.Path.GetFileName(s.Folder) == state.ServerFolderName);
            if (running != null) return;
            CheckpointRepository repository;
            try
            {
                repository = CheckpointRepository.Open(state.RepositoryPath); // the key this process unlocked, or the environment's password
            }
            catch (Security.RepositoryPasswordException) when (secret != null)
            {
                repository = CheckpointRepository.Open(state.RepositoryPath, secret);
            }
            var file = repository.FindCheckpoint(state.CheckpointId) ?? throw new KeyNotFoundException($"Checkpoint {state.CheckpointId} of '{state.VmName}' is gone from {state.RepositoryPath}: its instant restore cannot be completed.");
            var server = ExportServers.Start(new ExportServerRequest(repository, repository.ReadCheckpoint(file), "InstantRestore")
            {
                DiskNames = state.Disks.Select(d => d.Name).ToList(), OpenToOtherUsers = true, FolderName = state.ServerFolderName,
            });
            state.ServerProcessId = server.ProcessId;
            Save(state);
        }

        private static void StopServer(InstantRestoreState state)
        {
            foreach (var s in ExportServers.List().Where(s => System.IO.Path.GetFileName(s.Folder) == state.ServerFolderName)) ExportServers.Stop(s);
        }

        /// <summary>An earlier restore of the same VM replaced (-Force): its server goes; its overlays are the caller's to replace.</summary>
        private void Abandon(InstantRestoreState earlier)
        {
            StopServer(earlier);
            var job = _catalog.FindJob(earlier.JobId);
            if (job != null && job.Outcome == JobResult.Running) _catalog.FinishJob(job, JobResult.Cancelled, "Replaced by another restore (-Force).");
            TryDelete(StatePath(earlier.VmName));
        }

        private static string StatePath(string vmName) => System.IO.Path.Combine(StateRoot, RepositoryLayout.VmKey(vmName) + ".json");

        private static BsonMapper Mapper() => new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false };

        private static void Save(InstantRestoreState state)
        {
            Directory.CreateDirectory(StateRoot);
            var path = StatePath(state.VmName);
            File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(Mapper().ToDocument(state), indent: true));
            File.Copy(path + ".tmp", path, overwrite: true);
            File.Delete(path + ".tmp");
        }

        private static InstantRestoreState Load(string path)
        {
            try { return Mapper().ToObject<InstantRestoreState>((BsonDocument)JsonSerializer.Deserialize(File.ReadAllText(path))); }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is IOException)
            {
                throw new InvalidDataException($"{path} does not describe an instant restore ({e.Message}).");
            }
        }

        private static void TryDelete(string file)
        {
            try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
