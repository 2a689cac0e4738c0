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

        public const string PackSuffix = ".pack";
        public const string IndexSuffix = ".idx";
        public const string CheckpointSuffix = ".json";
        public const string LockSuffix = ".lock";

        /// <summary>The prefixes of a repository, made when it is created.</summary>
        public static readonly string[] Prefixes = { PacksPrefix, IndexPrefix, CheckpointsPrefix, LocksPrefix };

        public RepositoryLayout(IRepositoryBackend backend)
        {
            Backend = backend;
        }

        public IRepositoryBackend Backend { get; }

        /// <summary>Where the repository is, as users see it (a folder's full path).</summary>
        public string Root => Backend.Location;

        /// <summary>Packs are spread over 256 prefixes by their id's first byte: no folder grows huge.</summary>
        public string PackName(string id) => PacksPrefix + id.Substring(0, 2) + "/" + id + PackSuffix;
        public string IndexName(string id) => IndexPrefix + id + IndexSuffix;
        public string LockName(string id) => LocksPrefix + id + LockSuffix;

        /// <summary>Checkpoints of one VM share a prefix named after a hash of the VM's name (any name is safe).</summary>
        public string VmPrefix(string vmName) => CheckpointsPrefix + VmKey(vmName) + "/";
        public string CheckpointName(string vmName, DateTime time, string id) =>
            VmPrefix(vmName) + time.ToUniversalTime().ToString("yyyyMMdd'T'HHmmssfff'Z'", CultureInfo.InvariantCulture) + "_" + id + CheckpointSuffix;

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
