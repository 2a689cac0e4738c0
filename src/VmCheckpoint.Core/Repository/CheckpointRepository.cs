using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

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
        internal CheckpointFile(string id, string vmKey, DateTime time, string name, string path)
        {
            Id = id;
            VmKey = vmKey;
            Time = time;
            Name = name;
            Path = path;
        }

        public string Id { get; }
        public string VmKey { get; }
        public DateTime Time { get; }
        /// <summary>Where the manifest is, for people (a full path in a folder repository).</summary>
        public string Path { get; }
        /// <summary>The manifest's object name in the repository.</summary>
        internal string Name { get; }
    }

    /// <summary>
    /// A repository (a folder: local, SMB, NFS; or an S3 bucket): its configuration, its checkpoints and its block store, reached
    /// through a backend by object name (<see cref="RepositoryLayout"/>). See docs/repository-format.md.
    /// </summary>
    public sealed class CheckpointRepository
    {
        private CheckpointRepository(RepositoryLayout layout, RepositoryConfig config)
        {
            Layout = layout;
            Config = config;
        }

        internal RepositoryLayout Layout { get; }
        internal IRepositoryBackend Backend => Layout.Backend;
        public RepositoryConfig Config { get; }
        public string Path => Layout.Root;
        public string Id => Config.Id;
        public int BlockSize => Config.BlockSize;

        /// <summary>Creates a repository in a folder or share, or in S3 (<c>s3://bucket/prefix</c>: <see cref="RepositoryBackends"/>).</summary>
        /// <param name="retainDays">S3 only: days each pack and manifest is kept from deletion by Object Lock (0: none).</param>
        public static CheckpointRepository Create(string path, int blockSize = RepositoryConfig.DefaultBlockSize, int retainDays = 0)
            => Create(RepositoryBackends.For(path), blockSize, retainDays);

        internal static CheckpointRepository Create(IRepositoryBackend backend, int blockSize = RepositoryConfig.DefaultBlockSize, int retainDays = 0)
        {
            if (!RepositoryConfig.IsValidBlockSize(blockSize))
                throw new ArgumentOutOfRangeException(nameof(blockSize), $"The block size must be a power of two between {RepositoryConfig.MinBlockSize} and {RepositoryConfig.MaxBlockSize} bytes.");
            if (retainDays < 0 || retainDays > RepositoryConfig.MaxRetainDays)
                throw new ArgumentOutOfRangeException(nameof(retainDays), $"-RetainDays must be between 1 and {RepositoryConfig.MaxRetainDays}.");
            var layout = new RepositoryLayout(backend);
            if (retainDays > 0 && !(backend is S3Backend))
                throw new ArgumentException($"-RetainDays keeps objects with S3 Object Lock, which {layout.Root} does not have: give an s3:// repository, or leave -RetainDays out (protect a share with its own snapshots or WORM settings).", nameof(retainDays));
            if (backend.GetInfo(RepositoryLayout.ConfigName) != null)
                throw new LocationNotEmptyException($"{layout.Root} already holds a VmCheckpoint repository.");
            if (retainDays > 0) ((S3Backend)backend).RequireObjectLock();
            backend.CreateLocation(RepositoryLayout.Prefixes);
            var config = new RepositoryConfig { Id = Hex.Random(16), BlockSize = blockSize, Created = DateTime.UtcNow, RetainDays = retainDays };
            ApplyRetention(backend, config);
            // The configuration goes last: a location without it is not (yet) a repository.
            backend.Put(RepositoryLayout.ConfigName, config.Serialize());
            return new CheckpointRepository(layout, config);
        }

        public static CheckpointRepository Open(string path)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new RepositoryNotFoundException("No repository given: pass -Repository or set VMCHECKPOINT_REPOSITORY.", unreachable: false);
            return Open(RepositoryBackends.For(path));
        }

        internal static CheckpointRepository Open(IRepositoryBackend backend)
        {
            var layout = new RepositoryLayout(backend);
            bool exists;
            try
            {
                exists = backend.LocationExists();
            }
            catch (IOException e)
            {
                throw new RepositoryNotFoundException(e.Message, unreachable: true); // an object store's endpoint that does not answer, in its own words
            }
            if (!exists)
                throw new RepositoryNotFoundException(backend is LocalFolderBackend
                    ? $"The repository folder {layout.Root} does not exist or cannot be reached."
                    : $"The repository {layout.Root} does not exist (no such bucket) or cannot be reached.", unreachable: true);
            byte[] content;
            try
            {
                content = backend.ReadAll(RepositoryLayout.ConfigName);
            }
            catch (ObjectNotFoundException)
            {
                throw new RepositoryNotFoundException($"{layout.Root} is not a VmCheckpoint repository (no {RepositoryLayout.ConfigName}); create one with New-VmCheckpointRepository.", unreachable: false);
            }
            var config = RepositoryConfig.Parse(content, backend.Locate(RepositoryLayout.ConfigName));
            ApplyRetention(backend, config);
            return new CheckpointRepository(layout, config);
        }

        /// <summary>Every writer of a repository with retention writes its packs and manifests retained.</summary>
        private static void ApplyRetention(IRepositoryBackend backend, RepositoryConfig config)
        {
            if (config.RetainDays > 0 && backend is S3Backend s3) s3.RetainFor = TimeSpan.FromDays(config.RetainDays);
        }

        /// <summary>Every checkpoint file, without reading them.</summary>
        public IReadOnlyList<CheckpointFile> ListCheckpoints()
        {
            return ListUnder(RepositoryLayout.CheckpointsPrefix).ToList();
        }

        /// <summary>The checkpoint files of one VM, oldest first.</summary>
        public IReadOnlyList<CheckpointFile> ListCheckpoints(string vmName)
        {
            return ListUnder(Layout.VmPrefix(vmName)).OrderBy(f => f.Time).ToList();
        }

        /// <summary>Manifests are named checkpoints/&lt;vm key&gt;/&lt;time&gt;_&lt;id&gt;.json; anything else there is not one.</summary>
        private IEnumerable<CheckpointFile> ListUnder(string prefix)
        {
            foreach (var entry in Backend.List(prefix))
            {
                var segments = entry.Name.Split('/');
                if (segments.Length != 3 || !entry.Name.EndsWith(RepositoryLayout.CheckpointSuffix, StringComparison.Ordinal)) continue;
                var name = segments[2].Substring(0, segments[2].Length - RepositoryLayout.CheckpointSuffix.Length);
                int sep = name.IndexOf('_');
                if (sep < 0) continue;
                if (!DateTime.TryParseExact(name.Substring(0, sep), "yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture,
                        DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var time))
                    continue;
                yield return new CheckpointFile(name.Substring(sep + 1), segments[1], time, entry.Name, Backend.Locate(entry.Name));
            }
        }

        public CheckpointManifest ReadCheckpoint(CheckpointFile file)
        {
            byte[] content;
            try
            {
                content = Backend.ReadAll(file.Name);
            }
            catch (ObjectNotFoundException)
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
            var name = Layout.CheckpointName(manifest.VmName, manifest.StartTime, manifest.Id);
            Backend.Put(name, content);
            return new CheckpointFile(manifest.Id, RepositoryLayout.VmKey(manifest.VmName), manifest.StartTime, name, Backend.Locate(name));
        }

        internal void DeleteCheckpoint(CheckpointFile file)
        {
            if (Config.RetainDays > 0 && Backend.GetInfo(file.Name) is { } info && info.IsRetained(DateTime.UtcNow))
                throw new CheckpointRetainedException($"Checkpoint {file.Id} of {file.Time:u} is kept by S3 Object Lock until {info.RetainUntilUtc:u} (the repository's -RetainDays {Config.RetainDays}); it can be removed after that.", file.Id);
            Backend.Delete(file.Name);
        }

        internal RepositoryLock Lock(LockKind kind, TimeSpan wait, CancellationToken cancellationToken)
            => RepositoryLock.Acquire(Layout, kind, wait, cancellationToken);

        internal RepositoryLock Lock(LockKind kind, TimeSpan wait, CancellationToken cancellationToken, LockTimings? timings)
            => RepositoryLock.Acquire(Layout, kind, wait, cancellationToken, timings);

        internal BlockStore OpenStore(CancellationToken cancellationToken)
        {
            var store = new BlockStore(Layout);
            store.Load(cancellationToken);
            return store;
        }
    }
}
