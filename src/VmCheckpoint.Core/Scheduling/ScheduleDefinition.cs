using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Scheduling
{
    public enum ScheduleKind
    {
        /// <summary>Checkpoints VMs (then applies the retention policy, if any).</summary>
        Checkpoint,
        /// <summary>Runs the health watcher once per interval.</summary>
        Watch,
    }

    /// <summary>A scheduled job as registered: what runs, how often, and the command line the scheduler runs.</summary>
    public sealed class ScheduleDefinition
    {
        public string Name { get; set; } = "";
        public ScheduleKind Kind { get; set; }
        public List<string> VmNames { get; set; } = new List<string>();
        public TimeSpan Interval { get; set; }
        public string Repository { get; set; } = "";
        public string? CatalogPath { get; set; }
        public string? ConnectionUri { get; set; }
        /// <summary>Libvirt (also when empty: schedules written before Hyper-V) or HyperV.</summary>
        public string Hypervisor { get; set; } = Hypervisors.HypervisorNames.Libvirt;
        /// <summary>The Hyper-V host, for HyperV schedules; the local one when null.</summary>
        public string? ComputerName { get; set; }
        public bool IncludeMemory { get; set; }
        public int KeepLast { get; set; }
        public int KeepDaily { get; set; }
        public int KeepWeekly { get; set; }
        public int KeepMonthly { get; set; }
        /// <summary>For watch schedules: the recovery action and fallback host.</summary>
        public string? Action { get; set; }
        public string? TargetConnectionUri { get; set; }
        /// <summary>Where the scheduler is told to find pwsh and the module.</summary>
        public string[] PwshCommand { get; set; } = new string[0];
        public string ModulePath { get; set; } = "";
        /// <summary>Systemd, Cron or TaskScheduler.</summary>
        public string Scheduler { get; set; } = "";
        /// <summary>The files the scheduler reads (unit files, cron file), for Get- and Unregister-.</summary>
        public List<string> Files { get; set; } = new List<string>();

        public bool IsHyperV => Hypervisors.HypervisorNames.IsHyperV(Hypervisor);

        /// <summary>Where the schedule's VMs run: the libvirt URI (null: the default), or the Hyper-V computer name (null: this one).</summary>
        public string? HostLocation => Hypervisors.HypervisorNames.HostLocation(Hypervisor, ConnectionUri, ComputerName);

        public static void ValidateName(string name)
        {
            if (string.IsNullOrEmpty(name) || name.Length > 64 || !name.All(c => char.IsLetterOrDigit(c) || c == '-' || c == '_'))
                throw new ArgumentException($"'{name}' is not a usable schedule name: letters, digits, '-' and '_' only, at most 64.");
        }

        /// <summary>The PowerShell the scheduler runs: one scheduled run, by name (overlap and errors handled there).</summary>
        public string Script => $"Import-Module '{Quote(ModulePath)}'; Invoke-VmCheckpointSchedule -Name '{Quote(Name)}'";

        /// <summary>The whole command line, each argument shell-quoted (systemd and cron both accept this form).</summary>
        public string CommandLine =>
            string.Join(" ", PwshCommand.Concat(new[] { "-NoProfile", "-NonInteractive", "-Command", Script }).Select(ShellQuote));

        private static string Quote(string s) => s.Replace("'", "''");

        internal static string ShellQuote(string s) =>
            s.Length > 0 && s.All(c => char.IsLetterOrDigit(c) || "/._-:=+,@".IndexOf(c) >= 0) ? s : "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("$", "\\$") + "\"";

        internal byte[] Serialize() => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false }.ToDocument(this), indent: true));

        internal static ScheduleDefinition Parse(byte[] content, string source)
        {
            try
            {
                var mapper = new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false };
                return mapper.ToObject<ScheduleDefinition>((BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)));
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is FormatException)
            {
                throw new InvalidDataException($"{source}: not a schedule definition ({e.Message}).");
            }
        }
    }
}
