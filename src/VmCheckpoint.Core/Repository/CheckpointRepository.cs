using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>The path given is not a reachable VmCheckpoint repository.</summary>
    public sealed class RepositoryNotFoundException : IOException
    {
        public RepositoryNotFoundException(string message, bool unreachable) : base(message)
        {
            Unreachable = unreachable;
        }

        /// <summary>True when the folder itself cannot be reached (share down), false when it holds no repository.</summary>
        public bool Unreachable { get; }
    }

    /// <summary>A checkpoint file as listed in the repository, before its content is read.</summary>
    public sealed class CheckpointFile
    {
        internal CheckpointFile(string id, string vmKey, DateTime time, string path)
        {
            Id = id;
            VmKey = vmKey;
            Time = time;
            Path = path;
        }

        public string Id { get; }
        public string VmKey { get; }
        public DateTime Time { get; }
        public string Path { get; }
    }

    /// <summary>
    /// A repository folder (local, SMB, NFS): its configuration, its checkpoints and its block store.
    /// See docs/repository-format.md.
    /// </summary>
    public sealed class CheckpointRepository
    {
        private CheckpointRepository(RepositoryLayout layout, RepositoryConfig config)
        {
            Layout = layout;
            Config = config;
        }

        internal RepositoryLayout Layout { get; }
        public RepositoryConfig Config { get; }
        public string Path => Layout.Root;
        public string Id => Config.Id;
        public int BlockSize => Config.BlockSize;

        public static CheckpointRepository Create(string path, int blockSize = RepositoryConfig.DefaultBlockSize)
        {
            if (!RepositoryConfig.IsValidBlockSize(blockSize))
                throw new ArgumentOutOfRangeException(nameof(blockSize), $"The block size must be a power of two between {RepositoryConfig.MinBlockSize} and {RepositoryConfig.MaxBlockSize} bytes.");
            var layout = new RepositoryLayout(path);
            if (File.Exists(layout.ConfigPath))
                throw new IOException($"{layout.Root} already holds a VmCheckpoint repository.");
            if (Directory.Exists(layout.Root) && Directory.EnumerateFileSystemEntries(layout.Root).Any())
                throw new IOException($"{layout.Root} is not empty; a repository needs a folder of its own.");
            Directory.CreateDirectory(layout.Root);
            foreach (var d in new[] { layout.PacksDirectory, layout.IndexDirectory, layout.CheckpointsDirectory, layout.LocksDirectory })
                Directory.CreateDirectory(d);
            var config = new RepositoryConfig { Id = Hex.Random(16), BlockSize = blockSize, Created = DateTime.UtcNow };
            // The configuration goes last: a folder without it is not (yet) a repository.
            AtomicFile.Write(layout.ConfigPath, config.Serialize());
            return new CheckpointRepository(layout, config);
        }

        public static CheckpointRepository Open(string path)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new RepositoryNotFoundException("No repository given: pass -Repository or set VMCHECKPOINT_REPOSITORY.", unreachable: false);
            var layout = new RepositoryLayout(path);
            if (!Directory.Exists(layout.Root))
                throw new RepositoryNotFoundException($"The repository folder {layout.Root} does not exist or cannot be reached.", unreachable: true);
            byte[] content;
            try
            {
                content = File.ReadAllBytes(layout.ConfigPath);
            }
            catch (FileNotFoundException)
            {
                throw new RepositoryNotFoundException($"{layout.Root} is not a VmCheckpoint repository (no {RepositoryLayout.ConfigName}); create one with New-VmCheckpointRepository.", unreachable: false);
            }
            return new CheckpointRepository(layout, RepositoryConfig.Parse(content, layout.ConfigPath));
        }

        /// <summary>Every checkpoint file, without reading them.</summary>
        public IReadOnlyList<CheckpointFile> ListCheckpoints()
        {
            var list = new List<CheckpointFile>();
            foreach (var dir in RepositoryLayout.ListDirectories(Layout.CheckpointsDirectory))
                list.AddRange(ListIn(dir));
            return list;
        }

        /// <summary>The checkpoint files of one VM, oldest first.</summary>
        public IReadOnlyList<CheckpointFile> ListCheckpoints(string vmName)
        {
            return ListIn(Layout.VmDirectory(vmName)).OrderBy(f => f.Time).ToList();
        }

        private static IEnumerable<CheckpointFile> ListIn(string dir)
        {
            var key = System.IO.Path.GetFileName(dir);
            foreach (var file in RepositoryLayout.ListFiles(dir, "*.json"))
            {
                var name = System.IO.Path.GetFileNameWithoutExtension(file);
                int sep = name.IndexOf('_');
                if (sep < 0) continue;
                if (!DateTime.TryParseExact(name.Substring(0, sep), "yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture,
                        DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var time))
                    continue;
                yield return new CheckpointFile(name.Substring(sep + 1), key, time, file);
            }
        }

        public CheckpointManifest ReadCheckpoint(CheckpointFile file)
        {
            byte[] content;
            try
            {
                content = File.ReadAllBytes(file.Path);
            }
            catch (FileNotFoundException)
            {
                throw new KeyNotFoundException($"Checkpoint {file.Id} no longer exists in {Path}.");
            }
            if (CheckpointManifest.ComputeId(content) != file.Id)
                throw new InvalidDataException($"{file.Path}: content does not match its checksum (damaged manifest).");
            return CheckpointManifest.Parse(content, file.Id, file.Path);
        }

        /// <summary>Finds a checkpoint by id (or a unique prefix of at least 4 characters).</summary>
        public CheckpointFile? FindCheckpoint(string id)
        {
            var matches = CheckpointIds.Match(ListCheckpoints(), f => f.Id, id);
            if (matches.Count > 1) throw new ArgumentException($"'{id}' matches {matches.Count} checkpoints; give more of the id.");
            return matches.FirstOrDefault();
        }

        /// <summary>Writes a manifest atomically; returns it with its id set.</summary>
        internal CheckpointFile SaveCheckpoint(CheckpointManifest manifest)
        {
            var content = manifest.Serialize();
            manifest.Id = CheckpointManifest.ComputeId(content);
            var path = Layout.CheckpointPath(manifest.VmName, manifest.StartTime, manifest.Id);
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
            AtomicFile.Write(path, content);
            return new CheckpointFile(manifest.Id, RepositoryLayout.VmKey(manifest.VmName), manifest.StartTime, path);
        }

        internal void DeleteCheckpoint(CheckpointFile file)
        {
            File.Delete(file.Path);
        }

        internal RepositoryLock Lock(LockKind kind, TimeSpan wait, CancellationToken cancellationToken)
            => RepositoryLock.Acquire(Layout, kind, wait, cancellationToken);

        internal BlockStore OpenStore(CancellationToken cancellationToken)
        {
            var store = new BlockStore(Layout);
            store.Load(cancellationToken);
            return store;
        }
    }
}
