using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using LiteDB;

namespace VmCheckpoint.Core.Hypervisors.HyperV
{
    /// <summary>A Hyper-V VM's disk as the checkpoint names it, and the drive slot it sits in.</summary>
    public sealed class HyperVDiskSlot
    {
        public string Name { get; set; } = "";
        public string Slot { get; set; } = "";
        public string FileName { get; set; } = "";
    }

    /// <summary>
    /// What a checkpoint of a Hyper-V VM keeps as its configuration: the checkpoint's .vmcx, byte for byte, and the
    /// slot of each disk so that a restore can point each drive at its restored file. Stored as JSON in the manifest.
    /// </summary>
    public sealed class HyperVConfiguration
    {
        public const string Kind = "HyperV.vmcx";
        public string VmName { get; set; } = "";
        public string VmId { get; set; } = "";
        public string Version { get; set; } = "";
        public int Generation { get; set; }
        public List<HyperVDiskSlot> Disks { get; set; } = new List<HyperVDiskSlot>();
        public byte[] Vmcx { get; set; } = new byte[0];

        public string Serialize()
        {
            var doc = new BsonDocument
            {
                ["kind"] = Kind,
                ["vmName"] = VmName,
                ["vmId"] = VmId,
                ["version"] = Version,
                ["generation"] = Generation,
                ["disks"] = new BsonArray(Disks.Select(d => (BsonValue)new BsonDocument { ["name"] = d.Name, ["slot"] = d.Slot, ["fileName"] = d.FileName })),
                ["vmcx"] = Convert.ToBase64String(Vmcx),
            };
            return JsonSerializer.Serialize(doc, indent: false);
        }

        /// <summary>True when <paramref name="configuration"/> was written by <see cref="Serialize"/>.</summary>
        public static bool IsHyperV(string? configuration) =>
            configuration != null && configuration.TrimStart().StartsWith("{", StringComparison.Ordinal) && configuration.IndexOf(Kind, StringComparison.Ordinal) >= 0;

        public static HyperVConfiguration Parse(string configuration, string source)
        {
            try
            {
                if (!(JsonSerializer.Deserialize(configuration) is BsonDocument doc) || doc["kind"].AsString != Kind)
                    throw new InvalidDataException($"{source}: the configuration is not a Hyper-V VM's.");
                return new HyperVConfiguration
                {
                    VmName = doc["vmName"].AsString ?? "",
                    VmId = doc["vmId"].AsString ?? "",
                    Version = doc["version"].AsString ?? "",
                    Generation = doc["generation"].AsInt32,
                    Disks = doc["disks"].AsArray.Select(v => new HyperVDiskSlot
                    {
                        Name = v["name"].AsString ?? "", Slot = v["slot"].AsString ?? "", FileName = v["fileName"].AsString ?? "",
                    }).ToList(),
                    Vmcx = Convert.FromBase64String(doc["vmcx"].AsString ?? ""),
                };
            }
            catch (Exception e) when (e is LiteException || e is FormatException || e is InvalidCastException || e is NullReferenceException)
            {
                throw new InvalidDataException($"{source}: the Hyper-V configuration cannot be read ({e.Message}).", e);
            }
        }
    }
}
