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
        /// <summary>Checkpoint or Watch.</summary>
        public string Kind { get => ScheduleKind.ToString(); set => ScheduleKind = Reporting.EnumText.Parse<ScheduleKind>(value); }
        internal ScheduleKind ScheduleKind { get; set; }
        public Reporting.TextList VmNames { get; set; } = new Reporting.TextList();
        /// <summary>How often an interval schedule runs (zero for a calendar schedule, which has <see cref="At"/>).</summary>
        public TimeSpan Interval { get; set; }
        /// <summary>The local time of day a calendar schedule runs, or null for an interval schedule.</summary>
        public TimeSpan? At { get; set; }
        /// <summary>The days a calendar schedule runs on; every day when empty.</summary>
        public Reporting.TextList DaysOfWeek { get; set; } = new Reporting.TextList();
        internal IEnumerable<DayOfWeek> Days => DaysOfWeek.Select(d => Reporting.EnumText.Parse<DayOfWeek>(d));
        /// <summary>The backup window: a run still going after this long stops cleanly and says so (null: no limit).</summary>
        public TimeSpan? MaxDuration { get; set; }
        public string Repository { get; set; } = "";
        public string? CatalogPath { get; set; }
        /// <summary>An encrypted repository's password file, read by each run (the password itself is never stored).</summary>
        public string? PasswordFile { get; set; }
        public string? ConnectionUri { get; set; }
        /// <summary>Libvirt (also when empty: schedules written before Hyper-V) or HyperV.</summary>
        public string Hypervisor { get; set; } = Hypervisors.HypervisorNames.Libvirt;
        /// <summary>The Hyper-V host, for HyperV schedules; the local one when null.</summary>
        public string? ComputerName { get; set; }
        public bool IncludeMemory { get; set; }
        /// <summary>Boot-test each checkpoint the run takes (Test-VmCheckpoint -Boot); a failed test fails the run.</summary>
        public bool BootTest { get; set; }
        /// <summary>With <see cref="BootTest"/>: the console pattern to wait for (null: the guest agent must answer).</summary>
        public string? BootConsolePattern { get; set; }
        /// <summary>With <see cref="BootTest"/>: how long a copy may take to come up (null: 5 minutes).</summary>
        public TimeSpan? BootTimeout { get; set; }
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
        public Reporting.TextList Files { get; set; } = new Reporting.TextList();

        public bool IsHyperV => Hypervisors.HypervisorNames.IsHyperV(Hypervisor);

        /// <summary>Where the schedule's VMs run: the libvirt URI (null: the default), or the Hyper-V computer name (null: this one).</summary>
        public string? HostLocation => Hypervisors.HypervisorNames.HostLocation(Hypervisor, ConnectionUri, ComputerName);

        /// <summary>When the schedule runs, in words: "every 04:00:00", "daily at 02:30", "Mon, Fri at 02:30".</summary>
        public string When => At is { } at
            ? (DaysOfWeek.Count == 0 ? "daily" : string.Join(", ", OrderedDays.Select(d => d.ToString().Substring(0, 3)))) + " at " + TimeOfDay(at)
            : "every " + Interval;

        /// <summary>The days Monday first, each once.</summary>
        internal IEnumerable<DayOfWeek> OrderedDays => Days.Distinct().OrderBy(d => ((int)d + 6) % 7);

        internal static string TimeOfDay(TimeSpan at) =>
            at.Seconds == 0 ? $"{at.Hours:00}:{at.Minutes:00}" : $"{at.Hours:00}:{at.Minutes:00}:{at.Seconds:00}";

        /// <summary>What one run does, in words (for -WhatIf and messages).</summary>
        public string Describe()
        {
            string vms = VmNames.Count == 0 ? "every VM" : string.Join(", ", VmNames);
            if (ScheduleKind == ScheduleKind.Watch) return $"check the health of {vms} once ({Action ?? "default action"}), repository {Repository}";
            var keep = new List<string>();
            if (KeepLast > 0) keep.Add($"last {KeepLast}");
            if (KeepDaily > 0) keep.Add($"{KeepDaily} daily");
            if (KeepWeekly > 0) keep.Add($"{KeepWeekly} weekly");
            if (KeepMonthly > 0) keep.Add($"{KeepMonthly} monthly");
            return $"checkpoint {vms}{(IncludeMemory ? " with memory" : "")} into {Repository}" + (BootTest ? ", boot-test each new checkpoint" : "") +
                   (keep.Count > 0 ? ", then keep " + string.Join(", ", keep) : "") +
                   (MaxDuration is { } window ? $", within {window}" : "");
        }

        /// <summary>
        /// A schedule name from the VM names it covers: "checkpoint-web01-db01"; a wildcard alone is "all", and
        /// "web*" is "web-any". Names too long for a schedule keep their start and a short hash of the whole.
        /// </summary>
        public static string DefaultName(ScheduleKind kind, IReadOnlyCollection<string> vmNames)
        {
            var parts = vmNames.Select(n =>
            {
                if (n.All(c => c == '*' || c == '?')) return "all";
                var clean = new StringBuilder();
                foreach (char c in n)
                {
                    if (char.IsLetterOrDigit(c) && c < 128) clean.Append(c);
                    else if (c == '*' || c == '?') clean.Append(clean.Length > 0 && clean[clean.Length - 1] == '-' ? "any" : "-any");
                    else if (clean.Length > 0 && clean[clean.Length - 1] != '-') clean.Append('-');
                }
                return clean.ToString().Trim('-');
            }).Where(p => p.Length > 0).ToList();
            string name = (kind == ScheduleKind.Watch ? "watch" : "checkpoint") + (parts.Count == 0 ? "-all" : "-" + string.Join("-", parts));
            if (name.Length <= MaxNameLength) return name;
            using var sha = System.Security.Cryptography.SHA256.Create();
            string hash = string.Concat(sha.ComputeHash(Encoding.UTF8.GetBytes(string.Join("\n", vmNames))).Take(4).Select(b => b.ToString("x2")));
            return name.Substring(0, MaxNameLength - hash.Length - 1).TrimEnd('-') + "-" + hash;
        }

        public const int MaxNameLength = 64;

        /// <summary>Checks what a scheduler needs: an interval of a minute or more, or a time of day; a positive window.</summary>
        public void Validate()
        {
            ValidateName(Name);
            if (At is { } at)
            {
                if (Interval != TimeSpan.Zero) throw new ArgumentException("Give -Interval or -At, not both: a schedule runs every interval or at a time of day.");
                if (at < TimeSpan.Zero || at >= TimeSpan.FromDays(1) || at.Milliseconds != 0)
                    throw new ArgumentException($"-At {at} is not a time of day: give hours and minutes from 00:00 to 23:59, such as 02:30.");
            }
            else
            {
                if (DaysOfWeek.Count > 0) throw new ArgumentException("-DaysOfWeek needs -At: the time of day to run on those days.");
                if (Interval == TimeSpan.Zero) throw new ArgumentException("Give -Interval (every so long) or -At (a time of day, with -DaysOfWeek for some days only).");
                if (Interval < TimeSpan.FromMinutes(1)) throw new ArgumentException($"-Interval {Interval}: a schedule runs at most once a minute.");
            }
            if (BootTest && IsHyperV) throw new ArgumentException("-BootTest boots checkpoints on libvirt only: drop it for a Hyper-V schedule.");
            if (MaxDuration is { } window && window <= TimeSpan.Zero) throw new ArgumentException($"-MaxDuration {window}: a backup window must be longer than zero.");
        }

        public static void ValidateName(string name)
        {
            if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength || !name.All(c => char.IsLetterOrDigit(c) || c == '-' || c == '_'))
                throw new ArgumentException($"'{name}' is not a usable schedule name: letters, digits, '-' and '_' only, at most 64.");
        }

        /// <summary>The PowerShell the scheduler runs: one scheduled run, by name (overlap and errors handled there).</summary>
        /// <remarks>
        /// Plain text, whatever the terminal (a scheduler's log or mail has none); a schedule kept under another root
        /// than / (tests) says where, since the scheduler's environment holds nothing of the registering shell's.
        /// </remarks>
        public string Script =>
            "if ($PSStyle) { $PSStyle.OutputRendering = 'PlainText' }; " +
            (ScheduleRoot is null ? "" : $"$env:{ScheduleStore.RootVariable} = '{Quote(ScheduleRoot)}'; ") +
            $"Import-Module '{Quote(ModulePath)}'; Invoke-VmCheckpointSchedule -Name '{Quote(Name)}'";

        /// <summary>Where the schedule's definition is kept when not under / (tests); null for /.</summary>
        public string? ScheduleRoot { get; set; }

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
