using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using LiteDB;
using VmCheckpoint.Core.Exports;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>A file system of a checkpoint, mounted read-only.</summary>
    public sealed class MountedFileSystem
    {
        public string VmName { get; set; } = "";
        public string CheckpointId { get; set; } = "";
        public string DiskName { get; set; } = "";
        /// <summary>The partition's number in its table, or 0 for a disk with no partition table.</summary>
        public int Partition { get; set; }
        public string FileSystem { get; set; } = "";
        public long Size { get; set; }
        /// <summary>Where the file system is mounted.</summary>
        public string MountPoint { get; set; } = "";
        /// <summary>The folder given to Mount-VmCheckpoint: what Dismount-VmCheckpoint takes.</summary>
        public string Path { get; set; } = "";
    }

    /// <summary>Everything one mount set up, in the order it was set up: what a dismount undoes, in reverse.</summary>
    public sealed class MountState
    {
        public string Path { get; set; } = "";
        public string VmName { get; set; } = "";
        public string CheckpointId { get; set; } = "";
        public string ServerFolder { get; set; } = "";
        public int ServerProcessId { get; set; }
        /// <summary>nbdfuse mount folders (each shows one export as a file).</summary>
        public List<string> FuseFolders { get; set; } = new List<string>();
        public List<string> LoopDevices { get; set; } = new List<string>();
        public List<MountedFileSystem> FileSystems { get; set; } = new List<MountedFileSystem>();
        /// <summary>Folders this mount created under <see cref="Path"/> (removed again when empty).</summary>
        public List<string> CreatedFolders { get; set; } = new List<string>();
    }

    /// <summary>
    /// File-level restore: every file system of a checkpoint's disks mounted read-only under a folder, without restoring
    /// a disk. The checkpoint is served by an export server (<see cref="ExportServers"/>); nbdfuse shows each export as a
    /// file; a read-only loop device over each partition (offsets from sfdisk: MBR and GPT); mount -o ro (ext2/3/4 with
    /// noload and XFS with norecovery, so no journal is replayed). The state is kept under the runtime folder, so that
    /// <see cref="Dismount"/> in another session undoes all of it.
    /// </summary>
    public sealed class CheckpointMount
    {
        private readonly IJobReporter _reporter;

        public CheckpointMount(IJobReporter? reporter = null)
        {
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        public static string StateRoot => System.IO.Path.Combine(ExportServers.RuntimeRoot, "mounts");

        public IReadOnlyList<MountedFileSystem> Mount(CheckpointRepository repository, CheckpointManifest manifest, string path,
            IReadOnlyCollection<string>? diskNames, CancellationToken cancellationToken = default)
        {
            path = System.IO.Path.GetFullPath(path).TrimEnd('/');
            if (path.Length == 0) throw new ArgumentException("Mount a checkpoint under a folder of its own, not /.");
            var statePath = StatePath(path);
            if (File.Exists(statePath))
                throw new TargetExistsException(path, $"A checkpoint is already mounted at {path}: Dismount-VmCheckpoint -Path '{path}' first.");
            if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
                throw new TargetExistsException(path, $"{path} is not empty: mount a checkpoint into an empty or new folder.");
            var disks = manifest.Disks.Where(d => diskNames is null || diskNames.Contains(d.Name, StringComparer.OrdinalIgnoreCase)).ToList();
            if (diskNames != null && disks.Count != diskNames.Count)
                throw new KeyNotFoundException($"Checkpoint {manifest.Id} of '{manifest.VmName}' has no disk named {string.Join(", ", diskNames.Where(n => !manifest.Disks.Any(d => string.Equals(d.Name, n, StringComparison.OrdinalIgnoreCase))))} (it has {string.Join(", ", manifest.Disks.Select(d => d.Name))}).");
            var state = new MountState { Path = path, VmName = manifest.VmName, CheckpointId = manifest.Id };
            Directory.CreateDirectory(StateRoot);
            if (!Directory.Exists(path)) { Directory.CreateDirectory(path); state.CreatedFolders.Add(path); }
            Save(state);
            try
            {
                var server = ExportServers.Start(new ExportServerRequest(repository, manifest, "Mount") { DiskNames = disks.Select(d => d.Name).ToList() });
                state.ServerFolder = server.Folder;
                state.ServerProcessId = server.ProcessId;
                Save(state);
                foreach (var disk in server.Disks)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    string file = ShowAsFile(state, disk);
                    foreach (var part in Partitions(file, disk))
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        MountPartition(state, manifest, disk, file, part);
                    }
                }
                if (state.FileSystems.Count == 0)
                    throw new InvalidDataException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no file system this host can mount (disks {string.Join(", ", disks.Select(d => d.Name))}).");
                return state.FileSystems;
            }
            catch
            {
                Undo(state);
                throw;
            }
        }

        /// <summary>Undoes a mount: file systems, loop devices, nbdfuse, the export server, the folders it made.</summary>
        public MountState Dismount(string path)
        {
            path = System.IO.Path.GetFullPath(path).TrimEnd('/');
            var statePath = StatePath(path);
            if (!File.Exists(statePath)) throw new KeyNotFoundException($"No checkpoint is mounted at {path} (Mount-VmCheckpoint -Path mounts one).");
            var state = Load(statePath);
            // A file system in use stays mounted, and so does everything under it: the error says which, and a second
            // Dismount-VmCheckpoint finishes the job once it is closed.
            foreach (var fs in state.FileSystems.AsEnumerable().Reverse().ToList())
            {
                if (IsMounted(fs.MountPoint))
                {
                    var r = HostCommand.Run("umount", fs.MountPoint);
                    if (!r.Succeeded && IsMounted(fs.MountPoint))
                        throw new IOException($"{fs.MountPoint} cannot be unmounted ({r.Error.Trim()}): close what uses it (lsof +D '{fs.MountPoint}' lists it), then run Dismount-VmCheckpoint -Path '{path}' again.");
                }
                state.FileSystems.Remove(fs);
                TryRemoveFolder(fs.MountPoint);
                Save(state);
            }
            Undo(state);
            return state;
        }

        /// <summary>The mounts of this host.</summary>
        public static IReadOnlyList<MountState> List()
        {
            if (!Directory.Exists(StateRoot)) return Array.Empty<MountState>();
            return Directory.GetFiles(StateRoot, "*.json").Select(f => { try { return Load(f); } catch (InvalidDataException) { return null; } })
                .Where(s => s != null).Select(s => s!).ToList();
        }

        private string ShowAsFile(MountState state, ExportedDiskInfo disk)
        {
            var folder = System.IO.Path.Combine(StateFolder(state.Path), Safe(disk.Name));
            Directory.CreateDirectory(folder);
            state.FuseFolders.Add(folder);
            Save(state);
            string pidFile = folder + ".pid";
            File.Delete(pidFile);
            HostCommand.Detach("nbdfuse", new[] { "-r", "-P", pidFile, System.IO.Path.Combine(folder, "disk"), disk.Uri }, folder + ".log");
            var watch = Stopwatch.StartNew();
            while (!File.Exists(pidFile) || new FileInfo(pidFile).Length == 0)
            {
                if (watch.Elapsed > TimeSpan.FromSeconds(20))
                    throw new HostCommandException($"nbdfuse did not show disk {disk.Name} as a file: {ReadLog(folder + ".log")}");
                Thread.Sleep(20);
            }
            return System.IO.Path.Combine(folder, "disk");
        }

        private sealed class PartitionSpan
        {
            public int Number;
            public long Offset;
            public long Size;
        }

        /// <summary>The partitions of a disk (MBR, including logical ones, or GPT), or the whole disk when it has no table.</summary>
        private IEnumerable<PartitionSpan> Partitions(string file, ExportedDiskInfo disk)
        {
            var r = HostCommand.Run("sfdisk", "-J", file);
            if (!r.Succeeded || r.Output.Trim().Length == 0)
            {
                yield return new PartitionSpan { Number = 0, Offset = 0, Size = disk.Size };
                yield break;
            }
            var table = JsonSerializer.Deserialize(r.Output)["partitiontable"].AsDocument;
            long sector = table["sectorsize"].IsNull ? 512 : table["sectorsize"].AsInt64;
            bool mbr = table["label"].AsString == "dos";
            int n = 0;
            foreach (var p in table["partitions"].AsArray.Select(v => v.AsDocument))
            {
                n++;
                string node = p["node"].AsString;
                int number = int.TryParse(new string(node.Reverse().TakeWhile(char.IsDigit).Reverse().ToArray()), out var k) ? k : n;
                // An extended partition only holds the logical ones, which sfdisk lists on their own.
                if (mbr && new[] { "5", "f", "85" }.Contains(p["type"].AsString)) continue;
                yield return new PartitionSpan { Number = number, Offset = p["start"].AsInt64 * sector, Size = p["size"].AsInt64 * sector };
            }
        }

        private void MountPartition(MountState state, CheckpointManifest manifest, ExportedDiskInfo disk, string file, PartitionSpan part)
        {
            string what = part.Number == 0 ? $"disk {disk.Name}" : $"partition {part.Number} of disk {disk.Name}";
            var loop = HostCommand.Run("losetup", "-r", "-f", "--show", "-o", part.Offset.ToString(), "--sizelimit", part.Size.ToString(), file)
                .EnsureSucceeded($"A loop device for {what}").Output.Trim();
            state.LoopDevices.Add(loop);
            Save(state);
            var probe = HostCommand.Run("blkid", "-p", "-o", "export", loop);
            string type = probe.Output.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("TYPE=", StringComparison.Ordinal)).Select(l => l.Substring(5)).FirstOrDefault() ?? "";
            if (type.Length == 0 || type == "swap" || type.EndsWith("_member", StringComparison.Ordinal))
            {
                _reporter.Verbose($"{what}: {(type.Length == 0 ? "no file system found" : type)}, not mounted.");
                Detach(state, loop);
                return;
            }
            string options = type switch
            {
                "ext2" or "ext3" or "ext4" => "ro,noload",   // noload: the journal is not replayed
                "xfs" => "ro,norecovery,nouuid",           // norecovery: nor the log; nouuid: the original may be mounted too
                _ => "ro",
            };
            string mountPoint = System.IO.Path.Combine(state.Path, part.Number == 0 ? Safe(disk.Name) : $"{Safe(disk.Name)}-part{part.Number}");
            Directory.CreateDirectory(mountPoint);
            state.CreatedFolders.Add(mountPoint);
            Save(state);
            var mounted = HostCommand.Run("mount", "-t", type, "-o", options, loop, mountPoint);
            if (!mounted.Succeeded)
            {
                _reporter.Warning($"{what} ({type}) of checkpoint {manifest.Id} of '{manifest.VmName}' cannot be mounted here: {(mounted.Error + mounted.Output).Trim()}");
                TryRemoveFolder(mountPoint);
                Detach(state, loop);
                return;
            }
            state.FileSystems.Add(new MountedFileSystem
            {
                VmName = manifest.VmName, CheckpointId = manifest.Id, DiskName = disk.Name, Partition = part.Number,
                FileSystem = type, Size = part.Size, MountPoint = mountPoint, Path = state.Path,
            });
            Save(state);
            _reporter.Verbose($"{what}: {type} mounted read-only at {mountPoint}.");
        }

        private void Detach(MountState state, string loop)
        {
            HostCommand.Run("losetup", "-d", loop);
            state.LoopDevices.Remove(loop);
            Save(state);
        }

        /// <summary>Undoes whatever <paramref name="state"/> holds, as far as it can; ends by removing the state.</summary>
        private void Undo(MountState state)
        {
            foreach (var fs in state.FileSystems.AsEnumerable().Reverse())
                if (IsMounted(fs.MountPoint)) HostCommand.Run("umount", fs.MountPoint);
            foreach (var loop in state.LoopDevices.AsEnumerable().Reverse()) HostCommand.Run("losetup", "-d", loop);
            foreach (var folder in state.FuseFolders)
            {
                try
                {
                    if (IsMounted(folder)) HostCommand.Run("fusermount3", "-u", folder);
                }
                catch (HostCommandException) { } // no fusermount3: the nbdfuse process is ended below all the same
                WaitForExit(folder + ".pid");
                // An nbdfuse that never mounted (no FUSE, no fusermount3) has written no pid file and waits on: end it.
                StopNbdfuse(System.IO.Path.Combine(folder, "disk"));
                TryRemoveFolder(folder);
                TryDelete(folder + ".pid");
                TryDelete(folder + ".log");
            }
            if (state.ServerProcessId > 0)
                ExportServers.Stop(new ExportServerInfo { ProcessId = state.ServerProcessId, Folder = state.ServerFolder });
            foreach (var folder in state.CreatedFolders.AsEnumerable().Reverse()) TryRemoveFolder(folder);
            TryRemoveFolder(StateFolder(state.Path));
            TryDelete(StatePath(state.Path));
        }

        /// <summary>Ends every nbdfuse process serving at <paramref name="file"/> (found by its command line).</summary>
        private static void StopNbdfuse(string file)
        {
            foreach (var proc in Directory.EnumerateDirectories("/proc"))
            {
                if (!int.TryParse(System.IO.Path.GetFileName(proc), out int pid)) continue;
                string[] args;
                try { args = File.ReadAllText(System.IO.Path.Combine(proc, "cmdline")).Split('\0'); }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { continue; }
                if (args.Length == 0 || System.IO.Path.GetFileName(args[0]) != "nbdfuse" || !args.Contains(file)) continue;
                HostCommand.Run("kill", "-TERM", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
                var watch = Stopwatch.StartNew();
                while (Directory.Exists(proc) && watch.Elapsed < TimeSpan.FromSeconds(5)) Thread.Sleep(20);
                if (Directory.Exists(proc)) HostCommand.Run("kill", "-KILL", pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        private static void WaitForExit(string pidFile)
        {
            if (!File.Exists(pidFile) || !int.TryParse(File.ReadAllText(pidFile).Trim(), out int pid)) return;
            var watch = Stopwatch.StartNew();
            while (Directory.Exists($"/proc/{pid}") && watch.Elapsed < TimeSpan.FromSeconds(10)) Thread.Sleep(20);
        }

        private static bool IsMounted(string folder)
        {
            try
            {
                string escaped = folder.Replace(" ", "\\040");
                return File.ReadAllLines("/proc/self/mounts").Any(l => l.Split(' ').ElementAtOrDefault(1) == escaped);
            }
            catch (IOException) { return false; }
        }

        private static string Safe(string name) => new string(name.Select(c => char.IsLetterOrDigit(c) || c == '-' || c == '_' || c == '.' ? c : '_').ToArray());

        private static string Key(string path)
        {
            using var sha = SHA256.Create();
            return string.Concat(sha.ComputeHash(Encoding.UTF8.GetBytes(path)).Take(8).Select(b => b.ToString("x2")));
        }

        private static string StatePath(string path) => System.IO.Path.Combine(StateRoot, Key(path) + ".json");
        private static string StateFolder(string path) => System.IO.Path.Combine(StateRoot, Key(path));

        private static BsonMapper Mapper() => new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false };

        private static void Save(MountState state)
        {
            var path = StatePath(state.Path);
            File.WriteAllText(path + ".tmp", JsonSerializer.Serialize(Mapper().ToDocument(state), indent: true));
            File.Copy(path + ".tmp", path, overwrite: true);
            File.Delete(path + ".tmp");
        }

        private static MountState Load(string statePath)
        {
            try
            {
                return Mapper().ToObject<MountState>((BsonDocument)JsonSerializer.Deserialize(File.ReadAllText(statePath)));
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException)
            {
                throw new InvalidDataException($"{statePath} does not describe a mount ({e.Message}).");
            }
        }

        private static string ReadLog(string path) => File.Exists(path) ? File.ReadAllText(path).Trim() : "(no output)";

        private static void TryRemoveFolder(string folder)
        {
            try { if (Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any()) Directory.Delete(folder); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }

        private static void TryDelete(string file)
        {
            try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
