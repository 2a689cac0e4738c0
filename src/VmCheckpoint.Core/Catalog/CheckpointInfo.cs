using System;
using System.Collections.Generic;
using System.Linq;
using LiteDB;

namespace VmCheckpoint.Core.Catalog
{
    /// <summary>A disk of a checkpoint, as the catalog lists it.</summary>
    public sealed class CheckpointDiskInfo
    {
        public string Name { get; set; } = "";
        public string SourcePath { get; set; } = "";
        public string SourceFormat { get; set; } = "";
        public long VirtualSize { get; set; }
        /// <summary>Bytes of the disk that hold data (blocks listed in the manifest).</summary>
        public long DataBytes { get; set; }

        public override string ToString() => Name;
    }

    /// <summary>
    /// A checkpoint's disks; as text (Export-Csv, string interpolation) the names with format and size, so that a
    /// CSV row says which disks a checkpoint has instead of a .NET type name.
    /// </summary>
    public sealed class CheckpointDiskList : List<CheckpointDiskInfo>
    {
        public CheckpointDiskList() { }

        public CheckpointDiskList(IEnumerable<CheckpointDiskInfo> disks) : base(disks) { }

        public override string ToString() =>
            string.Join("; ", this.Select(d => $"{d.Name} ({d.SourceFormat}, {Reporting.TransferProgress.Size(d.VirtualSize)})"));
    }

    /// <summary>One checkpoint as the catalog indexes it (everything but the block tables).</summary>
    public sealed class CheckpointInfo
    {
        /// <summary>Catalog key: repository id and checkpoint id.</summary>
        [BsonId]
        public string Key { get; set; } = "";
        public string Id { get; set; } = "";
        public string VmName { get; set; } = "";
        public string Hypervisor { get; set; } = "";
        public string Host { get; set; } = "";
        public DateTime Time { get; set; }
        public DateTime EndTime { get; set; }
        public string? ParentId { get; set; }
        public CheckpointDiskList Disks { get; set; } = new CheckpointDiskList();
        public bool IncludesMemory { get; set; }
        /// <summary>Size of the stored memory and device state, or 0.</summary>
        public long MemoryBytes { get; set; }
        /// <summary>How long the VM was paused to take its memory state with the disks, or 0.</summary>
        public double PauseSeconds { get; set; }
        public long VirtualSize { get; set; }
        public long ReadBytes { get; set; }
        public long ChangedBytes { get; set; }
        public long StoredBytes { get; set; }
        public double DurationSeconds { get; set; }
        public string? Note { get; set; }
        /// <summary>The last boot test of the checkpoint (Test-VmCheckpoint -Boot): Passed, Failed, or null when never tested.</summary>
        public string? BootResult { get; set; }
        /// <summary>What the last boot test saw: what answered or matched, or why it failed.</summary>
        public string? BootReason { get; set; }
        public DateTime? BootTime { get; set; }
        [BsonIgnore]
        internal bool BootPassed => BootResult == BootOutcome.Passed;
        public string RepositoryId { get; set; } = "";
        /// <summary>The repository path this checkpoint was last seen through (for piping into other cmdlets).</summary>
        public string Repository { get; set; } = "";

        [BsonIgnore]
        public TimeSpan Duration => TimeSpan.FromSeconds(DurationSeconds);

        public override string ToString() => $"{VmName} {Id} {Time:u}";
    }

    /// <summary>The outcomes of a boot test, as the catalog and every output name them.</summary>
    public static class BootOutcome
    {
        public const string Passed = "Passed", Failed = "Failed";
    }

    /// <summary>One VM with checkpoints in a repository.</summary>
    public sealed class CheckpointedVmInfo
    {
        public string Name { get; set; } = "";
        public string Hypervisor { get; set; } = "";
        public string Host { get; set; } = "";
        public int CheckpointCount { get; set; }
        public DateTime LatestTime { get; set; }
        public string LatestId { get; set; } = "";
        /// <summary>Bytes the VM's checkpoints added to the repository, compressed.</summary>
        public long StoredBytes { get; set; }
        public long VirtualSize { get; set; }
        public string Repository { get; set; } = "";

        public override string ToString() => Name;
    }

    public enum JobResult
    {
        Running,
        Succeeded,
        Failed,
        Cancelled,
    }

    /// <summary>A line of the job log: every checkpoint, restore, verification or removal run.</summary>
    public sealed class JobRecord
    {
        /// <summary>A time-ordered id (24 hex digits), a plain string in every output and export.</summary>
        public string? Id { get; set; }
        public string Kind { get; set; } = "";
        public string VmName { get; set; } = "";
        public string RepositoryId { get; set; } = "";
        public string Repository { get; set; } = "";
        public string Host { get; set; } = Environment.MachineName;
        public int ProcessId { get; set; }
        public DateTime Start { get; set; }
        public DateTime? End { get; set; }
        /// <summary>Running, Succeeded, Failed or Cancelled, as a name in every output and export.</summary>
        public string Result { get => Outcome.ToString(); set => Outcome = Reporting.EnumText.Parse<JobResult>(value); }
        internal JobResult Outcome { get; set; }
        public string? Error { get; set; }
        public string? CheckpointId { get; set; }
        public string? Message { get; set; }
        /// <summary>A job that moves data (an instant restore's copy home): bytes done so far, and in all.</summary>
        public long? BytesDone { get; set; }
        public long? BytesTotal { get; set; }

        [BsonIgnore]
        public TimeSpan? Duration => End.HasValue ? End.Value - Start : (TimeSpan?)null;
    }
}
