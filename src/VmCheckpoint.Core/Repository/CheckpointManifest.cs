using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Text;
using LiteDB;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>One disk of a checkpoint: what it was and the hash of every block that holds data.</summary>
    public sealed class DiskManifest
    {
        public DiskManifest(string name, string sourcePath, DiskFormat sourceFormat, long virtualSize, BlockTable blocks)
        {
            Name = name;
            SourcePath = sourcePath;
            SourceFormat = sourceFormat;
            VirtualSize = virtualSize;
            Blocks = blocks;
        }

        /// <summary>The disk's name: its target (vda) on a live VM, the file's base name for an image file.</summary>
        public string Name { get; }
        public string SourcePath { get; }
        public DiskFormat SourceFormat { get; }
        public long VirtualSize { get; }
        public BlockTable Blocks { get; }
    }

    /// <summary>Figures of the run that took a checkpoint.</summary>
    public sealed class CheckpointStatistics
    {
        /// <summary>Bytes of data the run read from the disks.</summary>
        public long ReadBytes { get; set; }
        /// <summary>Bytes of blocks whose content differs from the parent checkpoint's.</summary>
        public long ChangedBytes { get; set; }
        /// <summary>Bytes of blocks new to the repository, before compression.</summary>
        public long NewBytes { get; set; }
        /// <summary>Bytes the run added to the repository (compressed).</summary>
        public long StoredBytes { get; set; }
        public double DurationSeconds { get; set; }
        /// <summary>How long the VM was paused for the checkpoint (memory state taken), or 0.</summary>
        public double PauseSeconds { get; set; }
    }

    /// <summary>
    /// A checkpoint as stored in the repository: self-describing JSON (docs/repository-format.md), named by the
    /// SHA-256 of its content. Every checkpoint lists every block of every disk, so restoring one never
    /// replays a chain.
    /// </summary>
    public sealed class CheckpointManifest
    {
        public const int CurrentFormat = 1;

        public string Id { get; internal set; } = "";
        public string VmName { get; set; } = "";
        public string Hypervisor { get; set; } = "";
        public string Host { get; set; } = "";
        public string? VmId { get; set; }
        public DateTime StartTime { get; set; }
        public DateTime EndTime { get; set; }
        public string? ParentId { get; set; }
        public int BlockSize { get; set; }
        /// <summary>The VM's configuration as its hypervisor writes it (libvirt domain XML, Hyper-V settings).</summary>
        public string? Configuration { get; set; }
        public List<DiskManifest> Disks { get; set; } = new List<DiskManifest>();
        public CheckpointStatistics Statistics { get; set; } = new CheckpointStatistics();
        /// <summary>Free-form notes of the run (why the chain was reset, ...).</summary>
        public string? Note { get; set; }
        /// <summary>
        /// The hypervisor's change-tracking reference this checkpoint was taken with (a libvirt checkpoint name, a
        /// Hyper-V RCT reference point): the next checkpoint may read only what changed since, while it exists.
        /// </summary>
        public string? ChangeTrackingId { get; set; }
        /// <summary>The VM's memory and device state at the disks' instant, stored like a disk; null when not taken.</summary>
        public DiskManifest? Memory { get; set; }

        public long VirtualSize => Disks.Sum(d => d.VirtualSize);

        /// <summary>The disks and, when taken, the memory state: everything whose blocks the checkpoint uses.</summary>
        public IEnumerable<DiskManifest> AllBlockLists => Memory is null ? Disks : Disks.Concat(new[] { Memory });

        internal byte[] Serialize()
        {
            var doc = new BsonDocument
            {
                ["format"] = CurrentFormat,
                ["vm"] = new BsonDocument
                {
                    ["name"] = VmName,
                    ["hypervisor"] = Hypervisor,
                    ["host"] = Host,
                    ["id"] = VmId is null ? BsonValue.Null : new BsonValue(VmId),
                },
                ["startTime"] = StartTime.ToUniversalTime().ToString("o"),
                ["endTime"] = EndTime.ToUniversalTime().ToString("o"),
                ["parent"] = ParentId is null ? BsonValue.Null : new BsonValue(ParentId),
                ["blockSize"] = BlockSize,
                ["configuration"] = Configuration is null ? BsonValue.Null : new BsonValue(Configuration),
                ["note"] = Note is null ? BsonValue.Null : new BsonValue(Note),
                ["changeTracking"] = ChangeTrackingId is null ? BsonValue.Null : new BsonValue(ChangeTrackingId),
                ["memory"] = Memory is null ? BsonValue.Null : SerializeDisk(Memory),
                ["statistics"] = new BsonDocument
                {
                    ["readBytes"] = Statistics.ReadBytes,
                    ["changedBytes"] = Statistics.ChangedBytes,
                    ["newBytes"] = Statistics.NewBytes,
                    ["storedBytes"] = Statistics.StoredBytes,
                    ["durationSeconds"] = Statistics.DurationSeconds,
                    ["pauseSeconds"] = Statistics.PauseSeconds,
                },
                ["disks"] = new BsonArray(Disks.Select(d => (BsonValue)SerializeDisk(d))),
            };
            return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(doc, indent: true));
        }

        private static BsonDocument SerializeDisk(DiskManifest d) => new BsonDocument
        {
            ["name"] = d.Name,
            ["sourcePath"] = d.SourcePath,
            ["sourceFormat"] = d.SourceFormat.ToString().ToLowerInvariant(),
            ["virtualSize"] = d.VirtualSize,
            ["blockCount"] = d.Blocks.Count,
            ["blocks"] = d.Blocks.Encode(),
        };

        private static DiskManifest ParseDisk(BsonDocument? d, int blockSize, string source)
        {
            if (d is null) throw new InvalidDataException($"{source}: a disk entry is not an object.");
            string name = RequireString(d, "name", source);
            DiskNames.ValidateStored(name, source);
            long size = d["virtualSize"].AsInt64;
            if (size <= 0 || size > (1L << 56)) throw new InvalidDataException($"{source}: disk '{name}' has size {size}.");
            if (!Enum.TryParse<DiskFormat>(RequireString(d, "sourceFormat", source), true, out var fmt))
                throw new InvalidDataException($"{source}: disk '{name}' has an unknown format.");
            long blockCount = (size + blockSize - 1) / blockSize;
            var blocks = BlockTable.Decode(RequireString(d, "blocks", source), d["blockCount"].AsInt32, blockCount, $"{source}, disk '{name}'");
            return new DiskManifest(name, d["sourcePath"].AsString ?? "", fmt, size, blocks);
        }

        internal static string ComputeId(byte[] content)
        {
            using (var sha = SHA256.Create()) return Hex.Encode(sha.ComputeHash(content), 0, 8);
        }

        /// <summary>Parses and checks a manifest; anything malformed throws InvalidDataException naming the source.</summary>
        internal static CheckpointManifest Parse(byte[] content, string id, string source)
        {
            BsonDocument doc;
            try
            {
                doc = JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)) as BsonDocument
                      ?? throw new InvalidDataException($"{source}: not a JSON object.");
            }
            catch (Exception e) when (!(e is InvalidDataException) && !(e is OutOfMemoryException))
            {
                // LiteDB's JSON reader fails on hostile text with whatever it hits (FormatException,
                // IndexOutOfRangeException on an empty key, ...), not only LiteException.
                throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).");
            }
            try
            {
                int format = doc["format"].AsInt32;
                if (format != CurrentFormat) throw new InvalidDataException($"{source}: manifest format {format} is not supported.");
                var vm = doc["vm"].AsDocument ?? throw new InvalidDataException($"{source}: no 'vm'.");
                var m = new CheckpointManifest
                {
                    Id = id,
                    VmName = RequireString(vm, "name", source),
                    Hypervisor = RequireString(vm, "hypervisor", source),
                    Host = vm["host"].AsString ?? "",
                    VmId = vm["id"].IsNull ? null : vm["id"].AsString,
                    StartTime = ParseTime(doc, "startTime", source),
                    EndTime = ParseTime(doc, "endTime", source),
                    ParentId = doc["parent"].IsNull ? null : doc["parent"].AsString,
                    BlockSize = doc["blockSize"].AsInt32,
                    Configuration = doc["configuration"].IsNull ? null : doc["configuration"].AsString,
                    Note = doc["note"].IsNull ? null : doc["note"].AsString,
                    ChangeTrackingId = doc["changeTracking"].IsNull ? null : doc["changeTracking"].AsString,
                };
                if (!RepositoryConfig.IsValidBlockSize(m.BlockSize))
                    throw new InvalidDataException($"{source}: block size {m.BlockSize} is not valid.");
                var stats = doc["statistics"].AsDocument;
                if (stats != null)
                {
                    m.Statistics.ReadBytes = stats["readBytes"].AsInt64;
                    m.Statistics.ChangedBytes = stats["changedBytes"].AsInt64;
                    m.Statistics.NewBytes = stats["newBytes"].AsInt64;
                    m.Statistics.StoredBytes = stats["storedBytes"].AsInt64;
                    m.Statistics.DurationSeconds = stats["durationSeconds"].AsDouble;
                    m.Statistics.PauseSeconds = stats["pauseSeconds"].AsDouble;
                }
                if (!doc["memory"].IsNull) m.Memory = ParseDisk(doc["memory"].AsDocument, m.BlockSize, source);
                var disks = doc["disks"].AsArray ?? throw new InvalidDataException($"{source}: no 'disks'.");
                foreach (var d in disks) m.Disks.Add(ParseDisk(d.AsDocument, m.BlockSize, source));
                if (m.Disks.Select(d => d.Name).Distinct(StringComparer.OrdinalIgnoreCase).Count() != m.Disks.Count)
                    throw new InvalidDataException($"{source}: two disks have the same name.");
                return m;
            }
            catch (Exception e) when (e is InvalidCastException || e is FormatException || e is OverflowException)
            {
                // LiteDB's AsInt32/AsInt64/AsDouble convert with System.Convert: a string or an out-of-range number lands here.
                throw new InvalidDataException($"{source}: a field has the wrong type ({e.Message}).");
            }
        }

        private static string RequireString(BsonDocument doc, string key, string source)
        {
            var v = doc[key];
            if (!v.IsString || string.IsNullOrEmpty(v.AsString)) throw new InvalidDataException($"{source}: '{key}' is missing.");
            return v.AsString;
        }

        private static DateTime ParseTime(BsonDocument doc, string key, string source)
        {
            var v = doc[key];
            if (v.IsString && DateTime.TryParse(v.AsString, null, System.Globalization.DateTimeStyles.RoundtripKind, out var t))
                return t.ToUniversalTime();
            if (v.IsDateTime) return v.AsDateTime.ToUniversalTime();
            throw new InvalidDataException($"{source}: '{key}' is not a time.");
        }
    }
}
