using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>An exported disk as a running server announces it.</summary>
    public sealed class ExportedDiskInfo
    {
        public string Name { get; set; } = "";
        public long Size { get; set; }
        /// <summary>The export's NBD URI, e.g. nbd+unix:///vda?socket=/run/vmcheckpoint/exports/…/nbd.sock</summary>
        public string Uri { get; set; } = "";
    }

    /// <summary>
    /// A running export server, as it describes itself in server.json of its folder once its socket listens. The
    /// folder is the server's: it removes it when it stops.
    /// </summary>
    public sealed class ExportServerInfo
    {
        public const string StateFileName = "server.json";
        public const string SocketFileName = "nbd.sock";
        public const string LogFileName = "server.log";

        public string Folder { get; set; } = "";
        public int ProcessId { get; set; }
        public string SocketPath { get; set; } = "";
        public string RepositoryPath { get; set; } = "";
        public string CheckpointId { get; set; } = "";
        public string VmName { get; set; } = "";
        /// <summary>What it serves for: Mount, InstantRestore, ...</summary>
        public string Purpose { get; set; } = "";
        public DateTime StartTime { get; set; }
        public List<ExportedDiskInfo> Disks { get; set; } = new List<ExportedDiskInfo>();

        public static string Uri(string exportName, string socketPath) => $"nbd+unix:///{exportName}?socket={socketPath}";

        private static BsonMapper Mapper() => new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false };

        internal byte[] Serialize() => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(Mapper().ToDocument(this), indent: true));

        internal static ExportServerInfo Parse(byte[] content, string source)
        {
            try
            {
                var info = Mapper().ToObject<ExportServerInfo>((BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)));
                if (info.ProcessId <= 0 || string.IsNullOrEmpty(info.SocketPath)) throw new InvalidDataException("no process or socket");
                return info;
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is InvalidDataException || e is FormatException)
            {
                throw new InvalidDataException($"{source} does not describe an export server ({e.Message}).");
            }
        }

        public override string ToString() => $"{VmName} {CheckpointId} ({string.Join(", ", Disks.Select(d => d.Name))}) on {SocketPath}, process {ProcessId}";
    }
}
