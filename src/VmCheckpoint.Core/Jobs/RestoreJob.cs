using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>A disk file written by a restore.</summary>
    public sealed class RestoredDisk
    {
        public string Name { get; set; } = "";
        public string Path { get; set; } = "";
        /// <summary>qcow2, vhdx, vhd or raw: the format written.</summary>
        public string Format { get => FormatKind.ToString(); set => FormatKind = Reporting.EnumText.Parse<DiskFormat>(value); }
        internal DiskFormat FormatKind { get; set; }
        public long VirtualSize { get; set; }
        public long DataBytes { get; set; }
    }

    public sealed class RestoreRequest
    {
        public RestoreRequest(CheckpointFile checkpoint, string destination)
        {
            Checkpoint = checkpoint;
            Destination = destination;
        }

        public CheckpointFile Checkpoint { get; }
        public string Destination { get; }
        /// <summary>The format to write; null: qcow2, or the format the target hypervisor runs its VMs from (VmRestoreJob).</summary>
        public DiskFormat? Format { get; set; }
        /// <summary>Overwrite existing files of the same names.</summary>
        public bool Force { get; set; }
        /// <summary>Restore only these disks (all when null).</summary>
        public IReadOnlyCollection<string>? DiskNames { get; set; }
        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(10);

        /// <summary>
        /// VHDX only: a folder holding an earlier restore (&lt;disk&gt;.vhdx for each disk). Each disk is then written
        /// as a differencing VHDX (.avhdx chain link) on that parent, holding only the blocks that differ from it,
        /// as Hyper-V needs to restore a checkpoint chain.
        /// </summary>
        public string? DifferencingParentFolder { get; set; }

        /// <summary>Also write the memory and device state (as &lt;destination&gt;/memory.save), if the checkpoint has one.</summary>
        public bool IncludeMemory { get; set; }
    }

    /// <summary>
    /// Writes a checkpoint's disks as image files. Every block is checked against its hash as it is read; each
    /// file is written under a temporary name and renamed when complete, so a failed restore leaves no
    /// half-written disk under the final name.
    /// </summary>
    public sealed class RestoreJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog? _catalog;
        private readonly IJobReporter _reporter;

        public RestoreJob(CheckpointRepository repository, CheckpointCatalog? catalog, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public static string Extension(DiskFormat format) => format.ToString().ToLowerInvariant();

        /// <summary>The files a restore would write, without writing them.</summary>
        public IReadOnlyList<string> PlanTargets(CheckpointManifest manifest, RestoreRequest request)
            => SelectDisks(manifest, request).Select(d => TargetPath(request, d)).ToList();

        public IReadOnlyList<RestoredDisk> Run(RestoreRequest request, CancellationToken cancellationToken = default)
        {
            return JobLog.Run(_catalog, "Restore", "", _repository, job =>
            {
                var manifest = _repository.ReadCheckpoint(request.Checkpoint);
                if (job != null) { job.VmName = manifest.VmName; job.CheckpointId = manifest.Id; }
                using var repositoryLock = _repository.Lock(LockKind.Shared, request.LockWait, cancellationToken);
                // A lock that can no longer be refreshed stops the restore before reclaiming could take it for stale.
                return repositoryLock.Run(cancellationToken, token => RestoreUnderLock(manifest, request, token));
            }, restored => string.Join(", ", restored.Select(r => r.Path)));
        }

        private IReadOnlyList<RestoredDisk> RestoreUnderLock(CheckpointManifest manifest, RestoreRequest request, CancellationToken cancellationToken)
        {
            var disks = SelectDisks(manifest, request);
            var targets = disks.Select(d => TargetPath(request, d)).ToList();
            var memoryTarget = Path.Combine(Path.GetFullPath(request.Destination), "memory.save");
            // Refused before anything is written: a file a running VM holds, -Force or not; an existing one without -Force.
            var all = request.IncludeMemory ? targets.Concat(new[] { memoryTarget }).ToList() : targets;
            EnsureNotHeld(all);
            if (!request.Force && all.FirstOrDefault(File.Exists) is { } existing) throw new TargetExistsException(existing);
            Directory.CreateDirectory(request.Destination);
            using var store = _repository.OpenStore(cancellationToken);
            var restored = new List<RestoredDisk>();
            for (int i = 0; i < disks.Count; i++)
            {
                string status = $"{manifest.VmName} {manifest.Id}: disk {disks[i].Name} ({i + 1} of {disks.Count})";
                restored.Add(request.DifferencingParentFolder is null
                    ? RestoreDisk(store, manifest, disks[i], targets[i], request, status, cancellationToken)
                    : RestoreDifferencing(store, manifest, disks[i], targets[i], request, status, cancellationToken));
            }
            if (request.IncludeMemory)
            {
                if (manifest.Memory is null) throw new InvalidOperationException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no memory state (take checkpoints with -IncludeMemory).");
                var raw = new RestoreRequest(request.Checkpoint, request.Destination) { Format = DiskFormat.Raw, Force = request.Force };
                restored.Add(RestoreDisk(store, manifest, manifest.Memory, memoryTarget, raw, $"{manifest.VmName} {manifest.Id}: memory state", cancellationToken));
            }
            return restored;
        }

        /// <summary>
        /// Writes a differencing VHDX over a parent restored earlier: every block where the checkpoint and the
        /// parent's actual content differ (by hash; zero where the checkpoint has none) is written, nothing else.
        /// The parent is read, not trusted: it may have been restored from any checkpoint, or changed since.
        /// </summary>
        private RestoredDisk RestoreDifferencing(BlockStore store, CheckpointManifest manifest, DiskManifest disk, string target,
            RestoreRequest request, string status, CancellationToken cancellationToken)
        {
            if ((request.Format ?? DiskFormat.Vhdx) != DiskFormat.Vhdx)
                throw new ArgumentException("A differencing parent is only supported for VHDX restores (-DiskFormat vhdx).");
            var parentPath = Path.Combine(Path.GetFullPath(request.DifferencingParentFolder!), disk.Name + ".vhdx");
            if (!File.Exists(parentPath)) throw new FileNotFoundException($"Differencing parent {parentPath} does not exist.", parentPath);
            int blockSize = manifest.BlockSize;
            // A short name of its own beside the target: a disk name near the file-name limit still restores.
            var temporary = Path.Combine(Path.GetDirectoryName(target)!, TemporaryPrefix + Hex.Random(4) + ".partial");
            long data = 0;
            try
            {
                using (var parent = DiskImage.Open(parentPath))
                using (var reader = new BlockReader(store, _repository.Layout))
                using (var sha = _repository.Layout.NewBlockHasher())
                using (var writer = Disks.Vhdx.VhdxImageWriter.CreateDifferencing(temporary, parentPath))
                {
                    if (parent.VirtualSize != writer.VirtualSize || writer.VirtualSize < disk.VirtualSize)
                        throw new InvalidOperationException($"Differencing parent {parentPath} is {parent.VirtualSize} bytes; disk {disk.Name} is {disk.VirtualSize}.");
                    var indexes = new SortedSet<long>();
                    for (int i = 0; i < disk.Blocks.Count; i++) indexes.Add(disk.Blocks.IndexAt(i));
                    foreach (var e in parent.GetDataExtents(0, parent.VirtualSize))
                        for (long b = e.Offset / blockSize; b < (e.End + blockSize - 1) / blockSize; b++) indexes.Add(b);
                    var ours = new byte[blockSize];
                    var theirs = new byte[blockSize];
                    long done = 0;
                    foreach (long index in indexes)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        long offset = index * blockSize;
                        int length = (int)Math.Min(blockSize, writer.VirtualSize - offset);
                        parent.Read(offset, theirs, 0, length);
                        bool parentZero = DiskUploader.IsZero(theirs, length);
                        var hash = disk.Blocks.Find(index);
                        if (hash is null)
                        {
                            if (!parentZero)
                            {
                                Array.Clear(ours, 0, length);
                                writer.Write(offset, ours, 0, length);
                                data += length;
                            }
                        }
                        else if (parentZero || BlockHash.Compute(sha, theirs, 0, length) != hash.Value)
                        {
                            int n = reader.Read(hash.Value, ours);
                            writer.Write(offset, ours, 0, Math.Min(n, length));
                            data += length;
                        }
                        _reporter.Progress("Restoring", status, (int)(100 * ++done / indexes.Count));
                    }
                    writer.Complete();
                }
                PutInPlace(temporary, target, request);
                _reporter.Verbose($"Restored disk {disk.Name} to {target}, a differencing VHDX on {parentPath} holding {data} bytes.");
                return new RestoredDisk { Name = disk.Name, Path = target, FormatKind = DiskFormat.Vhdx, VirtualSize = disk.VirtualSize, DataBytes = data };
            }
            catch
            {
                AtomicFile.TryDelete(temporary);
                throw;
            }
        }

        /// <summary>
        /// Renames a written and flushed temporary file to its target. An existing target (only with -Force) is never
        /// deleted: it is renamed beside it, and the warning says where. A file a running VM holds is never replaced.
        /// </summary>
        private void PutInPlace(string temporary, string target, RestoreRequest request)
        {
            // Again at the last moment: a VM may have been started on the file meanwhile.
            EnsureNotHeld(new[] { target });
            if (File.Exists(target))
            {
                if (!request.Force) throw new TargetExistsException(target);
                string kept = target + ".replaced-" + DateTime.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture);
                File.Move(target, kept);
                _reporter.Warning($"{target} existed: it is kept as {kept} (delete it once the restored disk is good).");
            }
            File.Move(temporary, target);
        }

        private static void EnsureNotHeld(IReadOnlyCollection<string> targets) =>
            FileUsers.EnsureNotInUse(targets, writersOnly: false, (target, user) =>
                $"{target} is held by {user}: a restore never replaces a file that a running VM holds, with -Force or without. " +
                (user.VmName != null ? $"Stop '{user.VmName}' first, or restore into another folder." : "Close it first, or restore into another folder."));

        private static List<DiskManifest> SelectDisks(CheckpointManifest manifest, RestoreRequest request)
        {
            if (request.DiskNames is null) return manifest.Disks;
            var missing = request.DiskNames.Where(n => !manifest.Disks.Any(d => string.Equals(d.Name, n, StringComparison.OrdinalIgnoreCase))).ToList();
            if (missing.Count > 0)
                throw new KeyNotFoundException($"Checkpoint {manifest.Id} has no disk named {string.Join(", ", missing)} (it has {string.Join(", ", manifest.Disks.Select(d => d.Name))}).");
            return manifest.Disks.Where(d => request.DiskNames.Contains(d.Name, StringComparer.OrdinalIgnoreCase)).ToList();
        }

        /// <summary>The prefix of the files a restore writes before it renames them to the disks' names.</summary>
        public const string TemporaryPrefix = "vmcheckpoint-restore-";

        private static string TargetPath(RestoreRequest request, DiskManifest disk)
            => Path.Combine(Path.GetFullPath(request.Destination), disk.Name + "." + (request.DifferencingParentFolder is null ? Extension(request.Format ?? DiskFormat.Qcow2) : "avhdx"));

        private RestoredDisk RestoreDisk(BlockStore store, CheckpointManifest manifest, DiskManifest disk, string target,
            RestoreRequest request, string status, CancellationToken cancellationToken)
        {
            long virtualSize = disk.VirtualSize;
            var format = request.Format ?? DiskFormat.Qcow2;
            if (format != DiskFormat.Raw && virtualSize % 512 != 0)
            {
                // qcow2 and VHDX sizes are whole sectors; like qemu-img convert, pad the tail with zeros.
                virtualSize += 512 - virtualSize % 512;
                _reporter.Warning($"Disk {disk.Name} is {disk.VirtualSize} bytes, not whole 512-byte sectors: its {format} copy is {virtualSize} bytes, the tail zero-filled. Restore as raw for the exact size.");
            }
            // A short name of its own beside the target: a disk name near the file-name limit still restores.
            var temporary = Path.Combine(Path.GetDirectoryName(target)!, TemporaryPrefix + Hex.Random(4) + ".partial");
            long data = 0;
            try
            {
                using (var writer = DiskImage.Create(temporary, format, virtualSize))
                {
                    data = WriteBlocks(store, disk, manifest.BlockSize, writer, status, cancellationToken);
                    writer.Complete();
                }
                PutInPlace(temporary, target, request);
                _reporter.Verbose($"Restored disk {disk.Name} to {target} ({data} bytes of data).");
                return new RestoredDisk { Name = disk.Name, Path = target, FormatKind = format, VirtualSize = virtualSize, DataBytes = data };
            }
            catch
            {
                AtomicFile.TryDelete(temporary);
                throw;
            }
        }

        /// <summary>
        /// Writes a disk's blocks in disk order and returns the bytes written. A few threads each take the next block,
        /// read, decompress and check it on their own, then wait for their turn to write it: the writer sees one
        /// ascending stream, and no thread spins on a queue (on two cores, spinning waits cost more than they overlap).
        /// </summary>
        private long WriteBlocks(BlockStore store, DiskManifest disk, int blockSize, IDiskImageWriter writer, string status, CancellationToken cancellationToken)
        {
            var blocks = disk.Blocks;
            // One thread per core (two at least, four at most). Unlike the checkpoint's, no extra thread: measured on two
            // cores, a third one only added waits for the turn (1.5 GiB: 1.44-1.65 s with two, 1.66-1.85 s with three).
            int threads = Math.Max(2, Math.Min(4, Environment.ProcessorCount));
            var turn = new object();
            int taken = 0, written = 0;
            long data = 0;
            var progress = new TransferProgress(_reporter, "Restoring", status, blockSize);
            using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            // A thread waiting for its turn wakes when the run fails or is stopped.
            using var wake = failed.Token.Register(() => { lock (turn) Monitor.PulseAll(turn); });
            void Work()
            {
                var buffer = new byte[blockSize];
                using var reader = new BlockReader(store, _repository.Layout);
                while (true)
                {
                    int i;
                    lock (turn)
                    {
                        failed.Token.ThrowIfCancellationRequested();
                        if (taken >= blocks.Count) return;
                        i = taken++;
                    }
                    int n = reader.Read(blocks.HashAt(i), buffer);
                    lock (turn)
                    {
                        while (written != i)
                        {
                            failed.Token.ThrowIfCancellationRequested();
                            Monitor.Wait(turn);
                        }
                    }
                    // This thread's turn: the others wait until `written` moves on.
                    long offset = blocks.IndexAt(i) * (long)blockSize;
                    int length = (int)Math.Min(n, disk.VirtualSize - offset);
                    writer.Write(offset, buffer, 0, length);
                    data += length;
                    progress.Report(i + 1, blocks.Count);
                    lock (turn)
                    {
                        written++;
                        Monitor.PulseAll(turn);
                    }
                }
            }
            WorkerThreads.Run(threads, failed, Work);
            cancellationToken.ThrowIfCancellationRequested();
            return data;
        }
    }
}
