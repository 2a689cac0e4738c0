using System;
using System.Globalization;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// The names of a repository's objects (docs/repository-format.md), and the backend that holds them. Names are
    /// '/'-separated keys, never paths: where the bytes live is the backend's business.
    /// </summary>
    internal sealed class RepositoryLayout
    {
        public const string ConfigName = "vmcheckpoint-repository.json";
        public const string PacksPrefix = "packs/";
        public const string IndexPrefix = "index/";
        public const string CheckpointsPrefix = "checkpoints/";
        public const string LocksPrefix = "locks/";
        public const string KeysPrefix = "keys/";

        public const string PackSuffix = ".pack";
        public const string IndexSuffix = ".idx";
        public const string CheckpointSuffix = ".json";
        public const string LockSuffix = ".lock";
        public const string KeySuffix = ".key";

        /// <summary>The prefixes of a repository, made when it is created.</summary>
        public static readonly string[] Prefixes = { PacksPrefix, IndexPrefix, CheckpointsPrefix, LocksPrefix };

        public RepositoryLayout(IRepositoryBackend backend)
        {
            Backend = backend;
        }

        public IRepositoryBackend Backend { get; }

        /// <summary>The master key of an encrypted repository once unlocked; null for an unencrypted one.</summary>
        public Encryption.RepositoryKey? Key { get; set; }

        /// <summary>A block's id function: SHA-256, or HMAC-SHA256 under the id key in an encrypted repository.</summary>
        public System.Security.Cryptography.HashAlgorithm NewBlockHasher() =>
            Key?.NewBlockHasher() ?? (System.Security.Cryptography.HashAlgorithm)System.Security.Cryptography.SHA256.Create();

        /// <summary>An object's bytes as stored: encrypted as <paramref name="kind"/> in an encrypted repository, as is otherwise.</summary>
        public byte[] Seal(byte[] plain, string kind) => Key is null ? plain : Key.SealObject(plain, kind);

        /// <summary>An object's bytes as written: decrypted and authenticated in an encrypted repository (<see cref="System.IO.InvalidDataException"/> when altered).</summary>
        public byte[] Unseal(byte[] stored, string kind, string source) => Key is null ? stored : Key.OpenObject(stored, kind, source);

        /// <summary>Reads an index file (decrypted when the repository is encrypted).</summary>
        public System.Collections.Generic.Dictionary<string, System.Collections.Generic.List<PackEntry>> ReadIndex(string name)
        {
            var source = Backend.Locate(name);
            return IndexFile.Parse(Unseal(Backend.ReadAll(name), "index", source), source);
        }

        /// <summary>Writes an index file under <paramref name="name"/> (encrypted when the repository is).</summary>
        public void WriteIndex(string name, System.Collections.Generic.IReadOnlyDictionary<string, System.Collections.Generic.IReadOnlyList<PackEntry>> packs)
            => Backend.Put(name, Seal(IndexFile.Serialize(packs), "index"));

        /// <summary>Where the repository is, as users see it (a folder's full path).</summary>
        public string Root => Backend.Location;

        /// <summary>Packs are spread over 256 prefixes by their id's first byte: no folder grows huge.</summary>
        public string PackName(string id) => PacksPrefix + id.Substring(0, 2) + "/" + id + PackSuffix;
        public string IndexName(string id) => IndexPrefix + id + IndexSuffix;
        public string LockName(string id) => LocksPrefix + id + LockSuffix;
        public string KeyName(string id) => KeysPrefix + id + KeySuffix;

        /// <summary>Checkpoints of one VM share a prefix named after a hash of the VM's name (any name is safe).</summary>
        public string VmPrefix(string vmName) => CheckpointsPrefix + KeyOfVm(vmName) + "/";

        /// <summary>The folder key of a VM's manifests: a plain hash of its name, or a keyed one in an encrypted repository.</summary>
        public string KeyOfVm(string vmName) => Key?.VmKey(vmName) ?? VmKey(vmName);
        public string CheckpointName(string vmName, DateTime time, string id) =>
            VmPrefix(vmName) + time.ToUniversalTime().ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture) + "_" + id + CheckpointSuffix;

        /// <summary>16 hex digits of the SHA-256 of a VM's name: the folder of its manifests in an unencrypted repository, and local state names.</summary>
        public static string VmKey(string vmName)
        {
            using (var sha = System.Security.Cryptography.SHA256.Create())
                return Hex.Encode(sha.ComputeHash(System.Text.Encoding.UTF8.GetBytes(vmName)), 0, 8);
        }

        /// <summary>The last segment of a name, up to its first dot: a pack's, index's or lock's id.</summary>
        public static string IdFromName(string name) => LastSegment(name).Split('.')[0];

        public static string LastSegment(string name) => name.Substring(name.LastIndexOf('/') + 1);
    }
}
