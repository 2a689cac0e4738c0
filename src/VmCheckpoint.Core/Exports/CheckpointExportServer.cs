#if NET
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>What one export server serves: the disks of one checkpoint, on one socket.</summary>
    public sealed class ExportServerOptions
    {
        public string RepositoryPath { get; set; } = "";
        /// <summary>The master key of an encrypted repository (the starter's, never a password); null: unencrypted, or the environment's password.</summary>
        public byte[]? MasterKey { get; set; }
        public string CheckpointId { get; set; } = "";
        /// <summary>Serve only these disks (all when null).</summary>
        public IReadOnlyCollection<string>? DiskNames { get; set; }
        public string SocketPath { get; set; } = "";
        /// <summary>Stop after this long with no client; null: until stopped.</summary>
        public TimeSpan? IdleExit { get; set; }
        public TimeSpan LockWait { get; set; } = TimeSpan.FromMinutes(1);
    }

    /// <summary>
    /// The body of an export server process: a checkpoint's disks served over NBD straight from the repository, under a
    /// shared lock for as long as it serves, so blocks cannot be reclaimed from under a client. A lock lost (the share
    /// gone, the lock removed) stops the server: its clients' reads then fail instead of going on unprotected.
    /// </summary>
    public static class CheckpointExportServer
    {
        public static void Run(ExportServerOptions options, Action<IReadOnlyList<IExportedDisk>> listening, Action<string> log, CancellationToken cancellationToken)
        {
            var repository = options.MasterKey is null
                ? CheckpointRepository.Open(options.RepositoryPath)
                : CheckpointRepository.Open(options.RepositoryPath, Repository.Encryption.RepositoryKey.FromBytes(options.MasterKey));
            var file = repository.FindCheckpoint(options.CheckpointId)
                ?? throw new KeyNotFoundException($"Checkpoint {options.CheckpointId} is not in the repository {repository.Path}.");
            var manifest = repository.ReadCheckpoint(file);
            var disks = manifest.Disks.Where(d => options.DiskNames is null || options.DiskNames.Contains(d.Name, StringComparer.OrdinalIgnoreCase)).ToList();
            if (disks.Count == 0)
                throw new KeyNotFoundException($"Checkpoint {manifest.Id} of '{manifest.VmName}' has no disk named {string.Join(", ", options.DiskNames ?? Array.Empty<string>())} (it has {string.Join(", ", manifest.Disks.Select(d => d.Name))}).");
            using var repositoryLock = repository.Lock(LockKind.Shared, options.LockWait, cancellationToken);
            repositoryLock.Run(cancellationToken, token =>
            {
                using var store = repository.OpenStore(token);
                var exports = disks.Select(d => (IExportedDisk)new CheckpointDiskExport(store, repository.Layout, d, manifest.BlockSize)).ToList();
                var server = new NbdServer(options.SocketPath, exports, log) { IdleExit = options.IdleExit, Listening = () => listening(exports) };
                server.Run(token);
                return 0;
            });
        }
    }
}
#endif
