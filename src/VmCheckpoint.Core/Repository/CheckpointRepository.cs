using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Security;
using VmCheckpoint.Core.Repository.Backends;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository.Encryption;

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
        /// <param name="encryptWith">Encrypts the repository (AES-256-GCM) under a random master key wrapped by this password; null: not encrypted.</param>
        public static CheckpointRepository Create(string path, int blockSize = RepositoryConfig.DefaultBlockSize, int retainDays = 0, RepositorySecret? encryptWith = null)
            => Create(RepositoryBackends.For(path), blockSize, retainDays, encryptWith);

        internal static CheckpointRepository Create(IRepositoryBackend backend, int blockSize = RepositoryConfig.DefaultBlockSize, int retainDays = 0, RepositorySecret? encryptWith = null)
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
            backend.CreateLocation(encryptWith is null ? RepositoryLayout.Prefixes : RepositoryLayout.Prefixes.Concat(new[] { RepositoryLayout.KeysPrefix }).ToArray());
            var config = new RepositoryConfig { Id = Hex.Random(16), BlockSize = blockSize, Created = DateTime.UtcNow, RetainDays = retainDays };
            string? slotName = null;
            if (encryptWith != null)
            {
                config.Encryption = RepositoryConfig.Aes256GcmName;
                layout.Key = RepositoryKey.Generate();
                slotName = WriteKeySlot(layout, layout.Key, encryptWith, config.Id);
            }
            ApplyRetention(backend, config);
            // The configuration goes last: a location without it is not (yet) a repository.
            backend.Put(RepositoryLayout.ConfigName, config.Serialize());
            if (layout.Key != null) Unlocked[config.Id] = layout.Key;
            return new CheckpointRepository(layout, config) { UnlockedWith = slotName };
        }

        /// <param name="secret">
        /// The password of an encrypted repository. Without it, the key this process unlocked the repository with before,
        /// else <see cref="RepositorySecret.FromEnvironment"/>; none of them is a <see cref="RepositoryPasswordException"/>.
        /// </param>
        public static CheckpointRepository Open(string path, RepositorySecret? secret = null)
        {
            if (string.IsNullOrWhiteSpace(path))
                throw new RepositoryNotFoundException("No repository given: pass -Repository or set VMCHECKPOINT_REPOSITORY.", unreachable: false);
            return Open(RepositoryBackends.For(path), secret);
        }

        /// <summary>Opens an encrypted repository with its master key itself (an export server, given it by its starter).</summary>
        internal static CheckpointRepository Open(string path, RepositoryKey key) => Open(RepositoryBackends.For(path), null, key);

        internal static CheckpointRepository Open(IRepositoryBackend backend, RepositorySecret? secret = null, RepositoryKey? key = null)
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
            string? slot = null;
            if (!config.Encrypted && ListKeySlots(layout, parse: false).Count > 0)
                throw new InvalidDataException($"{backend.Locate(RepositoryLayout.ConfigName)} says the repository is not encrypted, yet it holds keys of an encrypted one ({RepositoryLayout.KeysPrefix}): its configuration was replaced or damaged. Refused, so that nothing is written into it unencrypted; restore the configuration from a copy.");
            if (config.Encrypted && key != null) layout.Key = key;
            else if (config.Encrypted) (layout.Key, slot) = Unlock(layout, config, secret);
            return new CheckpointRepository(layout, config) { UnlockedWith = slot };
        }

        /// <summary>Master keys this process has unlocked, by repository id: a session gives its password once.</summary>
        private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, RepositoryKey> Unlocked =
            new System.Collections.Concurrent.ConcurrentDictionary<string, RepositoryKey>(StringComparer.Ordinal);

        /// <summary>Forgets the key this process unlocked a repository with (tests: as a new process would start).</summary>
        internal static void Forget(string repositoryId) => Unlocked.TryRemove(repositoryId, out _);

        /// <summary>The key slot the password given opened (null: unencrypted, or unlocked earlier in this process).</summary>
        internal string? UnlockedWith { get; private set; }

        public bool Encrypted => Config.Encrypted;

        private static (RepositoryKey Key, string? Slot) Unlock(RepositoryLayout layout, RepositoryConfig config, RepositorySecret? secret)
        {
            if (secret is null && Unlocked.TryGetValue(config.Id, out var cached)) return (cached, null);
            secret ??= RepositorySecret.FromEnvironment()
                ?? throw new RepositoryPasswordException($"The repository {layout.Root} is encrypted: give its password with -Password or -PasswordFile, or set $env:{RepositorySecret.PasswordVariable} or $env:{RepositorySecret.PasswordFileVariable} for unattended runs.");
            var damaged = new List<string>();
            var slots = ListKeySlots(layout, damaged);
            if (slots.Count == 0)
                throw new InvalidDataException(damaged.Count > 0
                    ? $"Every key of the encrypted repository {layout.Root} is damaged ({string.Join("; ", damaged)}); it cannot be read without one: put a key file back from a copy."
                    : $"{layout.Backend.Locate(RepositoryLayout.KeysPrefix)}: the repository is encrypted but holds no key (keys/ is empty or was deleted); it cannot be read without one.");
            foreach (var (name, slot) in slots)
            {
                var key = slot.TryUnlock(secret.Password, config.Id);
                if (key is null) continue;
                Unlocked[config.Id] = key;
                return (key, name);
            }
            // A damaged key file is only one password lost: the others still open the repository.
            throw new RepositoryPasswordException($"The password from {secret.Source} opens none of the {slots.Count} key(s) of the encrypted repository {layout.Root}: wrong password. Nothing was read or written." +
                (damaged.Count > 0 ? $" ({damaged.Count} more key file(s) are damaged: {string.Join("; ", damaged)})" : ""));
        }

        /// <param name="damaged">Where unreadable key files are listed and skipped; null: they throw.</param>
        private static List<(string Name, KeySlot Slot)> ListKeySlots(RepositoryLayout layout, bool parse = true) => ListKeySlots(layout, null, parse);

        private static List<(string Name, KeySlot Slot)> ListKeySlots(RepositoryLayout layout, List<string>? damaged, bool parse = true)
        {
            var slots = new List<(string, KeySlot)>();
            foreach (var entry in layout.Backend.List(RepositoryLayout.KeysPrefix))
            {
                if (!entry.Name.EndsWith(RepositoryLayout.KeySuffix, StringComparison.Ordinal)) continue;
                if (!parse) { slots.Add((entry.Name, null!)); continue; }
                byte[] content;
                try { content = layout.Backend.ReadAll(entry.Name); }
                catch (ObjectNotFoundException) { continue; }
                try
                {
                    slots.Add((entry.Name, KeySlot.Parse(content, layout.Backend.Locate(entry.Name))));
                }
                catch (InvalidDataException e) when (damaged != null)
                {
                    damaged.Add(e.Message);
                }
            }
            return slots;
        }

        private static string WriteKeySlot(RepositoryLayout layout, RepositoryKey key, RepositorySecret secret, string repositoryId)
        {
            var name = layout.KeyName(Hex.Random(16));
            layout.Backend.Put(name, KeySlot.Create(key, secret.Password, repositoryId).Serialize());
            return name;
        }

        /// <summary>The number of passwords (key slots) that open this encrypted repository.</summary>
        public int KeyCount => Encrypted ? ListKeySlots(Layout, parse: false).Count : 0;

        /// <summary>Throws <see cref="InvalidOperationException"/> for a repository that is not encrypted (it has no password).</summary>
        public void RequireEncrypted()
        {
            if (!Encrypted || Layout.Key is null)
                throw new InvalidOperationException($"The repository {Path} is not encrypted: it has no password (New-VmCheckpointRepository -Encrypt creates an encrypted repository; take checkpoints into it).");
        }

        /// <summary>
        /// Adds a password (a new key slot wrapping the same master key: nothing is re-encrypted). With
        /// <paramref name="replace"/>, the slot the repository was opened with is deleted once the new one is written,
        /// so that the old password stops working; a repository unlocked without a password this time cannot tell
        /// which slot that is, and is refused.
        /// </summary>
        public string AddPassword(RepositorySecret password, bool replace)
        {
            RequireEncrypted();
            if (replace && UnlockedWith is null)
                throw new InvalidOperationException($"Give the current password of {Path} (-Password or -PasswordFile) to change it: the key it opens is the one replaced.");
            foreach (var (slotName, slot) in ListKeySlots(Layout, new List<string>()))
            {
                if (slot.TryUnlock(password.Password, Config.Id) is null) continue;
                if (replace && !string.Equals(slotName, UnlockedWith, StringComparison.Ordinal))
                {
                    // A change interrupted between writing the new key and deleting the old one: finish it.
                    Backend.Delete(UnlockedWith!);
                    UnlockedWith = slotName;
                    return slotName;
                }
                throw new TargetExistsException(Path, $"The new password from {password.Source} already opens {Path}.");
            }
            var name = WriteKeySlot(Layout, Layout.Key!, password, Config.Id);
            if (replace)
            {
                Backend.Delete(UnlockedWith!);
                UnlockedWith = name;
            }
            return name;
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
            // Sealed for its VM's folder: a manifest moved into another VM's does not open there.
            return CheckpointManifest.Parse(Layout.Unseal(content, "manifest " + file.VmKey, file.Path), file.Id, file.Path);
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
            // An encrypted manifest's id is the hash of what is stored: it still names, and checks, the object itself.
            var content = Layout.Seal(manifest.Serialize(), "manifest " + Layout.KeyOfVm(manifest.VmName));
            manifest.Id = CheckpointManifest.ComputeId(content);
            var name = Layout.CheckpointName(manifest.VmName, manifest.StartTime, manifest.Id);
            Backend.Put(name, content);
            return new CheckpointFile(manifest.Id, Layout.KeyOfVm(manifest.VmName), manifest.StartTime, name, Backend.Locate(name));
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
