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
            BsonDocument doc;
            try
            {
                doc = JsonSerializer.Deserialize(configuration) as BsonDocument
                      ?? throw new InvalidDataException($"{source}: the Hyper-V configuration is not a JSON object.");
            }
            catch (Exception e) when (!(e is InvalidDataException))
            {
                // LiteDB's JSON reader fails on hostile text with whatever it hits.
                throw new InvalidDataException($"{source}: the Hyper-V configuration cannot be read ({e.Message}).", e);
            }
            if (Text(doc, "kind", source) != Kind) throw new InvalidDataException($"{source}: the configuration is not a Hyper-V VM's.");
            if (!doc["disks"].IsArray) throw new InvalidDataException($"{source}: the Hyper-V configuration lists no disks.");
            var result = new HyperVConfiguration
            {
                VmName = Text(doc, "vmName", source),
                VmId = Text(doc, "vmId", source),
                Version = Text(doc, "version", source),
                Generation = doc["generation"].IsNumber ? doc["generation"].AsInt32 : 0,
            };
            foreach (var v in doc["disks"].AsArray)
            {
                if (!v.IsDocument) throw new InvalidDataException($"{source}: a disk of the Hyper-V configuration is not an object.");
                result.Disks.Add(new HyperVDiskSlot { Name = Text(v.AsDocument, "name", source), Slot = Text(v.AsDocument, "slot", source), FileName = Text(v.AsDocument, "fileName", source) });
            }
            try { result.Vmcx = Convert.FromBase64String(Text(doc, "vmcx", source)); }
            catch (FormatException e) { throw new InvalidDataException($"{source}: the .vmcx of the Hyper-V configuration is not base64.", e); }
            return result;
        }

        private static string Text(BsonDocument doc, string field, string source) =>
            doc[field].IsString ? doc[field].AsString : throw new InvalidDataException($"{source}: the Hyper-V configuration has no text '{field}'.");
    }
}
