using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>Where each kind of file lives in a repository folder (docs/repository-format.md).</summary>
    internal sealed class RepositoryLayout
    {
        public const string ConfigName = "vmcheckpoint-repository.json";

        public RepositoryLayout(string root)
        {
            Root = Path.GetFullPath(root);
        }

        public string Root { get; }
        public string ConfigPath => Path.Combine(Root, ConfigName);
        public string PacksDirectory => Path.Combine(Root, "packs");
        public string IndexDirectory => Path.Combine(Root, "index");
        public string CheckpointsDirectory => Path.Combine(Root, "checkpoints");
        public string LocksDirectory => Path.Combine(Root, "locks");

        public string PackPath(string id) => Path.Combine(PacksDirectory, id.Substring(0, 2), id + ".pack");
        public string IndexPath(string id) => Path.Combine(IndexDirectory, id + ".idx");
        /// <summary>Checkpoints of one VM share a folder named after a hash of the VM's name (any name is safe).</summary>
        public string VmDirectory(string vmName) => Path.Combine(CheckpointsDirectory, VmKey(vmName));
        public string CheckpointPath(string vmName, DateTime time, string id) =>
            Path.Combine(VmDirectory(vmName), time.ToUniversalTime().ToString("yyyyMMdd'T'HHmmssfff'Z'", System.Globalization.CultureInfo.InvariantCulture) + "_" + id + ".json");

        public static string VmKey(string vmName)
        {
            using (var sha = System.Security.Cryptography.SHA256.Create())
                return Hex.Encode(sha.ComputeHash(System.Text.Encoding.UTF8.GetBytes(vmName)), 0, 8);
        }
        public string LockPath(string id) => Path.Combine(LocksDirectory, id + ".lock");

        public static string IdFromFileName(string path) => Path.GetFileName(path).Split('.')[0];

        /// <summary>
        /// The files in a folder of the repository. A folder that does not exist holds none; one that cannot be
        /// read (an SMB share that stopped answering: I/O error) throws. Directory.Exists answers false for both,
        /// and an unreachable folder taken for an empty one makes the catalog forget every checkpoint and
        /// reclaiming delete every pack.
        /// </summary>
        public static List<string> ListFiles(string directory, string pattern, SearchOption option = SearchOption.TopDirectoryOnly)
        {
            try
            {
                return Directory.EnumerateFiles(directory, pattern, option).ToList();
            }
            catch (DirectoryNotFoundException)
            {
                return new List<string>();
            }
        }

        /// <summary>The subfolders of a folder of the repository; as <see cref="ListFiles"/>, only a missing folder is empty.</summary>
        public static List<string> ListDirectories(string directory)
        {
            try
            {
                return Directory.EnumerateDirectories(directory).ToList();
            }
            catch (DirectoryNotFoundException)
            {
                return new List<string>();
            }
        }

        public static bool IsTemporary(string path) => path.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal);
    }
}
