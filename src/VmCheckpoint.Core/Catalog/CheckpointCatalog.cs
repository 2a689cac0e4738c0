using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Threading;
using LiteDB;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Catalog
{
    /// <summary>What a synchronisation of the catalog with a repository changed.</summary>
    public sealed class CatalogSyncResult
    {
        public int Added { get; set; }
        public int Removed { get; set; }
        public List<string> Unreadable { get; } = new List<string>();
    }

    /// <summary>
    /// The LiteDB catalog: an index of repositories' checkpoints and a log of jobs, kept on local disk
    /// (LiteDB's locking is not safe over network shares). It is never the only copy of anything: each
    /// use synchronises it with the repository, which rebuilds whatever is missing.
    /// </summary>
    public sealed class CheckpointCatalog : IDisposable
    {
        public const string PathVariable = "VMCHECKPOINT_CATALOG";
        private readonly LiteDatabase _db;
        private readonly ILiteCollection<CheckpointInfo> _checkpoints;
        private readonly ILiteCollection<JobRecord> _jobs;
        private readonly ILiteCollection<HealthEvent> _health;

        public CheckpointCatalog(string path)
        {
            Path = System.IO.Path.GetFullPath(path);
            var dir = System.IO.Path.GetDirectoryName(Path);
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
            // LiteDB's defaults would trim names and turn "" into null: a VM named " x " must stay " x ".
            var mapper = new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false };
            _db = new LiteDatabase(new ConnectionString { Filename = Path, Connection = ConnectionType.Shared }, mapper);
            _checkpoints = _db.GetCollection<CheckpointInfo>("checkpoints");
            _checkpoints.EnsureIndex(x => x.RepositoryId);
            _checkpoints.EnsureIndex(x => x.VmName);
            if (_db.UserVersion < StringIdsVersion)
            {
                UseStringIds("jobs");
                UseStringIds("health");
                _db.UserVersion = StringIdsVersion;
            }
            _jobs = _db.GetCollection<JobRecord>("jobs");
            _jobs.EnsureIndex(x => x.Start);
            _health = _db.GetCollection<HealthEvent>("health");
            _health.EnsureIndex(x => x.VmName);
        }

        public string Path { get; }

        /// <summary>
        /// Catalogs written before ids were strings hold LiteDB ObjectIds as the ids of jobs and health events: each is
        /// written again under its id's text, in one transaction, so the log keeps every entry and its order.
        /// </summary>
        private const int StringIdsVersion = 1;

        private void UseStringIds(string collection)
        {
            var documents = _db.GetCollection(collection);
            var old = documents.Find(Query.All()).Where(d => d["_id"].IsObjectId).ToList();
            if (old.Count == 0) return;
            _db.BeginTrans();
            try
            {
                foreach (var d in old)
                {
                    var id = d["_id"];
                    documents.Delete(id);
                    d["_id"] = id.AsObjectId.ToString();
                    documents.Insert(d);
                }
                _db.Commit();
            }
            catch
            {
                _db.Rollback();
                throw;
            }
        }

        /// <summary>$VMCHECKPOINT_CATALOG, else the machine-wide catalog for root and administrators, else the user's (<see cref="CatalogLocation"/>).</summary>
        public static string DefaultPath => CatalogLocation.Default;

        public static CheckpointCatalog OpenDefault() => new CheckpointCatalog(DefaultPath);

        /// <summary>Brings the catalog in line with the repository: indexes new checkpoints, forgets removed ones.</summary>
        public CatalogSyncResult Synchronize(CheckpointRepository repository, CancellationToken cancellationToken = default)
        {
            var result = new CatalogSyncResult();
            var files = repository.ListCheckpoints();
            var known = new HashSet<string>(_checkpoints.Find(c => c.RepositoryId == repository.Id).Select(c => c.Id), StringComparer.Ordinal);
            var present = new HashSet<string>(files.Select(f => f.Id), StringComparer.Ordinal);
            foreach (var file in files)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (known.Contains(file.Id)) continue;
                try
                {
                    AddCheckpoint(repository, repository.ReadCheckpoint(file));
                    result.Added++;
                }
                catch (Exception e) when (e is InvalidDataException || e is IOException || e is KeyNotFoundException || e is LiteException)
                {
                    // One manifest the catalog cannot read or index (a name past LiteDB's key limit, written by an older
                    // version) is skipped and reported: it never stops the others, nor any later run.
                    result.Unreadable.Add($"{file.Path}: {e.Message}");
                }
            }
            foreach (var id in known.Where(k => !present.Contains(k)))
            {
                _checkpoints.Delete(KeyOf(repository.Id, id));
                result.Removed++;
            }
            if (_checkpoints.Count(c => c.RepositoryId == repository.Id && c.Repository != repository.Path) > 0)
            {
                // The same repository reached through another path (a share mounted elsewhere).
                foreach (var c in _checkpoints.Find(c => c.RepositoryId == repository.Id).ToList())
                {
                    c.Repository = repository.Path;
                    _checkpoints.Update(c);
                }
            }
            return result;
        }

        public void AddCheckpoint(CheckpointRepository repository, CheckpointManifest m)
        {
            var info = new CheckpointInfo
            {
                Key = KeyOf(repository.Id, m.Id),
                Id = m.Id,
                VmName = m.VmName,
                Hypervisor = m.Hypervisor,
                Host = m.Host,
                Time = m.StartTime,
                EndTime = m.EndTime,
                ParentId = m.ParentId,
                VirtualSize = m.VirtualSize,
                ReadBytes = m.Statistics.ReadBytes,
                ChangedBytes = m.Statistics.ChangedBytes,
                StoredBytes = m.Statistics.StoredBytes,
                DurationSeconds = m.Statistics.DurationSeconds,
                PauseSeconds = m.Statistics.PauseSeconds,
                IncludesMemory = m.Memory != null,
                MemoryBytes = m.Memory?.VirtualSize ?? 0,
                Note = m.Note,
                RepositoryId = repository.Id,
                Repository = repository.Path,
                Disks = new CheckpointDiskList(m.Disks.Select(d => new CheckpointDiskInfo
                {
                    Name = d.Name,
                    SourcePath = d.SourcePath,
                    SourceFormat = d.SourceFormat.ToString().ToLowerInvariant(),
                    VirtualSize = d.VirtualSize,
                    DataBytes = DataBytes(d, m.BlockSize),
                })),
            };
            _checkpoints.Upsert(info);
        }

        private static long DataBytes(DiskManifest d, int blockSize)
        {
            long n = (long)d.Blocks.Count * blockSize;
            if (d.Blocks.Count > 0 && d.Blocks.IndexAt(d.Blocks.Count - 1) == (d.VirtualSize - 1) / blockSize)
                n -= (long)blockSize * ((d.VirtualSize + blockSize - 1) / blockSize) - d.VirtualSize;
            return n;
        }

        /// <summary>Records the outcome of a boot test on the checkpoint's entry (the latest test replaces an earlier one).</summary>
        public void RecordBootTest(string repositoryId, string id, bool passed, string reason, DateTime time)
        {
            var info = _checkpoints.FindById(KeyOf(repositoryId, id));
            if (info is null) return;
            info.BootResult = passed ? BootOutcome.Passed : BootOutcome.Failed;
            info.BootReason = reason;
            info.BootTime = time;
            _checkpoints.Update(info);
        }

        public void RemoveCheckpoint(string repositoryId, string id) => _checkpoints.Delete(KeyOf(repositoryId, id));

        /// <summary>Checkpoints of a repository, newest first.</summary>
        public List<CheckpointInfo> GetCheckpoints(string repositoryId, Func<CheckpointInfo, bool>? filter = null)
        {
            var all = _checkpoints.Find(c => c.RepositoryId == repositoryId);
            return (filter is null ? all : all.Where(filter)).OrderByDescending(c => c.Time).ThenByDescending(c => c.Id).ToList();
        }

        /// <summary>One entry per VM of a repository.</summary>
        public List<CheckpointedVmInfo> GetVms(string repositoryId, Func<string, bool>? nameFilter = null)
        {
            return GetCheckpoints(repositoryId, c => nameFilter is null || nameFilter(c.VmName))
                .GroupBy(c => c.VmName, StringComparer.Ordinal)
                .Select(g =>
                {
                    var latest = g.First();
                    return new CheckpointedVmInfo
                    {
                        Name = g.Key,
                        Hypervisor = latest.Hypervisor,
                        Host = latest.Host,
                        CheckpointCount = g.Count(),
                        LatestTime = latest.Time,
                        LatestId = latest.Id,
                        StoredBytes = g.Sum(c => c.StoredBytes),
                        VirtualSize = latest.VirtualSize,
                        Repository = latest.Repository,
                    };
                })
                .OrderBy(v => v.Name, StringComparer.OrdinalIgnoreCase)
                .ToList();
        }

        public JobRecord StartJob(string kind, string vmName, CheckpointRepository? repository)
        {
            using var me = Process.GetCurrentProcess();
            var job = new JobRecord
            {
                Kind = kind,
                VmName = vmName,
                RepositoryId = repository?.Id ?? "",
                Repository = repository?.Path ?? "",
                ProcessId = me.Id,
                Start = DateTime.UtcNow,
                Outcome = JobResult.Running,
            };
            job.Id = ObjectId.NewObjectId().ToString();
            _jobs.Insert(job);
            return job;
        }

        public void FinishJob(JobRecord job, JobResult result, string? error = null, string? checkpointId = null, string? message = null)
        {
            job.End = DateTime.UtcNow;
            job.Outcome = result;
            job.Error = error;
            job.CheckpointId = checkpointId ?? job.CheckpointId;
            job.Message = message ?? job.Message;
            _jobs.Update(job);
        }

        /// <summary>Records a running job's progress (bytes done, message).</summary>
        public void UpdateJob(JobRecord job) => _jobs.Update(job);

        public JobRecord? FindJob(string id) => _jobs.FindById(id);

        /// <summary>The job log, newest first.</summary>
        public List<JobRecord> GetJobs(Func<JobRecord, bool>? filter = null, int max = int.MaxValue)
        {
            var all = _jobs.FindAll().OrderByDescending(j => j.Start);
            return (filter is null ? all : all.Where(filter)).Take(max).ToList();
        }

        public void AddHealthEvent(HealthEvent e)
        {
            e.Id = ObjectId.NewObjectId().ToString();
            _health.Insert(e);
        }

        /// <summary>The health log, newest first.</summary>
        public List<HealthEvent> GetHealthEvents(Func<HealthEvent, bool>? filter = null, int max = int.MaxValue)
        {
            var all = _health.FindAll().OrderByDescending(h => h.Time).ThenByDescending(h => h.Id);
            return (filter is null ? all : all.Where(filter)).Take(max).ToList();
        }

        private static string KeyOf(string repositoryId, string id) => repositoryId + "/" + id;

        public void Dispose() => _db.Dispose();
    }
}
