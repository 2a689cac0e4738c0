using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text;

namespace VmCheckpoint.Core.Scheduling
{
    /// <summary>Where scheduled jobs are registered: systemd timers, cron, or Task Scheduler (in the cmdlet layer).</summary>
    public interface IScheduler
    {
        string Name { get; }
        /// <summary>The files this registration writes, without writing them.</summary>
        IReadOnlyList<string> Plan(ScheduleDefinition schedule);
        /// <summary>What registering would do, in the scheduler's own terms (for -Verbose and -WhatIf).</summary>
        string Explain(ScheduleDefinition schedule);
        void Register(ScheduleDefinition schedule);
        void Unregister(ScheduleDefinition schedule);
    }

    /// <summary>
    /// Schedule definitions live as JSON under &lt;root&gt;/etc/vmcheckpoint/schedules; the scheduler's own files
    /// (units, cron file) are generated from them. &lt;root&gt; is "/" except in tests ($VMCHECKPOINT_SCHEDULE_ROOT).
    /// </summary>
    public sealed class ScheduleStore
    {
        public const string RootVariable = "VMCHECKPOINT_SCHEDULE_ROOT";

        public ScheduleStore(string? root = null)
        {
            Root = root ?? Environment.GetEnvironmentVariable(RootVariable) ?? "/";
        }

        public string Root { get; }
        public string Folder => Path.Combine(Root, "etc", "vmcheckpoint", "schedules");
        public string PathOf(string name) => Path.Combine(Folder, name + ".json");

        public static bool SystemdRunning => Directory.Exists("/run/systemd/system");

        /// <summary>systemd when it runs this machine, cron otherwise.</summary>
        public IScheduler DefaultUnixScheduler() => SystemdRunning ? (IScheduler)new SystemdScheduler(this) : new CronScheduler(this);

        public IScheduler Unix(string name) => string.Equals(name, "Cron", StringComparison.OrdinalIgnoreCase) ? (IScheduler)new CronScheduler(this) : new SystemdScheduler(this);

        public List<ScheduleDefinition> List() =>
            Directory.Exists(Folder)
                ? Directory.EnumerateFiles(Folder, "*.json").Select(f => ScheduleDefinition.Parse(File.ReadAllBytes(f), f)).OrderBy(s => s.Name).ToList()
                : new List<ScheduleDefinition>();

        public ScheduleDefinition? Find(string name) => File.Exists(PathOf(name)) ? ScheduleDefinition.Parse(File.ReadAllBytes(PathOf(name)), PathOf(name)) : null;

        /// <summary>Writes the definition whole or not at all (temporary name, flush, rename): a crash never leaves half of one.</summary>
        public void Save(ScheduleDefinition s)
        {
            Directory.CreateDirectory(Folder);
            string path = PathOf(s.Name);
            string temporary = path + "." + Guid.NewGuid().ToString("N").Substring(0, 8) + ".tmp";
            try
            {
                using (var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
                {
                    var bytes = s.Serialize();
                    file.Write(bytes, 0, bytes.Length);
                    file.Flush(flushToDisk: true);
                }
                if (File.Exists(path)) File.Replace(temporary, path, null);
                else File.Move(temporary, path);
            }
            catch
            {
                try { File.Delete(temporary); } catch (IOException) { }
                throw;
            }
        }

        public void Delete(string name) => File.Delete(PathOf(name));

        /// <summary>The lock a scheduled run holds: a run that finds it held stops with a clear error.</summary>
        public FileStream? TryTakeRunLock(string name)
        {
            var dir = Path.Combine(Path.GetTempPath(), "vmcheckpoint-schedules");
            Directory.CreateDirectory(dir);
            try { return new FileStream(Path.Combine(dir, name + ".lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) { return null; }
        }
    }

    /// <summary>A .service and a .timer per schedule; enabled with systemctl when systemd runs.</summary>
    public sealed class SystemdScheduler : IScheduler
    {
        private readonly ScheduleStore _store;

        public SystemdScheduler(ScheduleStore store) { _store = store; }

        public string Name => "Systemd";

        public string Explain(ScheduleDefinition s) => $"a systemd timer ({TimerLines(s)[0]}) and its service: {string.Join(", ", Plan(s))}";
        private string UnitFolder => Path.Combine(_store.Root, "etc", "systemd", "system");
        private string Unit(ScheduleDefinition s) => "vmcheckpoint-" + s.Name;

        public IReadOnlyList<string> Plan(ScheduleDefinition s) =>
            new[] { Path.Combine(UnitFolder, Unit(s) + ".service"), Path.Combine(UnitFolder, Unit(s) + ".timer") };

        public void Register(ScheduleDefinition s)
        {
            Directory.CreateDirectory(UnitFolder);
            var files = Plan(s);
            File.WriteAllText(files[0], new StringBuilder()
                .AppendLine("[Unit]")
                .AppendLine($"Description=VmCheckpoint {s.Kind.ToString().ToLowerInvariant()} schedule {s.Name}")
                .AppendLine("Wants=network-online.target")
                .AppendLine("After=network-online.target libvirtd.service")
                .AppendLine()
                .AppendLine("[Service]")
                .AppendLine("Type=oneshot")
                .AppendLine("Environment=NO_COLOR=1")
                .AppendLine("ExecStart=" + s.CommandLine.Replace("%", "%%"))
                .ToString());
            File.WriteAllText(files[1], new StringBuilder()
                .AppendLine("[Unit]")
                .AppendLine($"Description=Runs VmCheckpoint schedule {s.Name} {s.When}")
                .AppendLine()
                .AppendLine("[Timer]")
                .AppendLine(string.Join(Environment.NewLine, TimerLines(s)))
                .AppendLine()
                .AppendLine("[Install]")
                .AppendLine("WantedBy=timers.target")
                .ToString());
            s.Files = new Reporting.TextList(files);
            if (_store.Root == "/" && ScheduleStore.SystemdRunning)
            {
                Run("systemctl", "daemon-reload");
                Run("systemctl", "enable", "--now", Unit(s) + ".timer");
            }
        }

        public void Unregister(ScheduleDefinition s)
        {
            if (_store.Root == "/" && ScheduleStore.SystemdRunning) Run("systemctl", "disable", "--now", Unit(s) + ".timer");
            foreach (var f in Plan(s)) File.Delete(f);
            if (_store.Root == "/" && ScheduleStore.SystemdRunning) Run("systemctl", "daemon-reload");
        }

        /// <summary>
        /// The timer's trigger: a calendar time (OnCalendar, Persistent=true: a run missed while the host was off
        /// comes at the next boot), or an interval counted from the last run.
        /// </summary>
        public static string[] TimerLines(ScheduleDefinition s) => s.At is { } at
            ? new[] { $"OnCalendar={OnCalendar(s.OrderedDays.ToList(), at)}", "Persistent=true" }
            : new[] { $"OnActiveSec={Seconds(s.Interval)}", $"OnUnitActiveSec={Seconds(s.Interval)}", "Persistent=true" };

        /// <summary>systemd's calendar form: "Mon,Fri *-*-* 02:30:00", or "*-*-* 02:30:00" every day.</summary>
        public static string OnCalendar(IReadOnlyCollection<DayOfWeek> days, TimeSpan at) =>
            (days.Count == 0 ? "" : string.Join(",", days.Select(d => d.ToString().Substring(0, 3))) + " ") +
            $"*-*-* {at.Hours:00}:{at.Minutes:00}:{at.Seconds:00}";

        private static string Seconds(TimeSpan t) => ((long)t.TotalSeconds).ToString(CultureInfo.InvariantCulture) + "s";

        internal static void Run(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file, string.Join(" ", args.Select(ScheduleDefinition.ShellQuote))) { UseShellExecute = false, RedirectStandardError = true, RedirectStandardOutput = true };
            using var p = Process.Start(psi)!;
            string err = p.StandardError.ReadToEnd();
            p.WaitForExit();
            if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(" ", args)} failed: {err.Trim()}");
        }
    }

    /// <summary>A file in /etc/cron.d per schedule, where systemd does not run. Cron counts in whole minutes.</summary>
    public sealed class CronScheduler : IScheduler
    {
        private readonly ScheduleStore _store;

        public CronScheduler(ScheduleStore store) { _store = store; }

        public string Name => "Cron";

        public string Explain(ScheduleDefinition s) => $"the cron file {string.Join(", ", Plan(s))}: {TimeFields(s)} root {s.CommandLine}";
        private string CronFolder => Path.Combine(_store.Root, "etc", "cron.d");

        public IReadOnlyList<string> Plan(ScheduleDefinition s)
        {
            TimeFields(s); // a time cron cannot express fails before anything is written
            return new[] { Path.Combine(CronFolder, "vmcheckpoint-" + s.Name) };
        }

        /// <summary>The cron time fields of a schedule: its time of day and days, or its interval.</summary>
        public static string TimeFields(ScheduleDefinition s)
        {
            if (!(s.At is { } at)) return TimeFields(s.Interval);
            if (at.Seconds != 0) throw new ArgumentException($"cron runs jobs at whole minutes; -At {ScheduleDefinition.TimeOfDay(at)} is not one.");
            string days = s.DaysOfWeek.Count == 0 ? "*" : string.Join(",", s.Days.Distinct().Select(d => (int)d).OrderBy(d => d));
            return $"{at.Minutes} {at.Hours} * * {days}";
        }

        /// <summary>The cron time fields for an interval: every N minutes (N dividing 60), every N hours (dividing 24), or daily.</summary>
        public static string TimeFields(TimeSpan interval)
        {
            int minutes = (int)interval.TotalMinutes;
            if (interval.TotalMinutes != minutes || minutes < 1)
                throw new ArgumentException($"cron runs jobs in whole minutes; {interval} is not.");
            if (minutes < 60 && 60 % minutes == 0) return minutes == 1 ? "* * * * *" : $"*/{minutes} * * * *";
            if (minutes % 60 == 0 && minutes / 60 < 24 && 24 % (minutes / 60) == 0) return $"0 */{minutes / 60} * * *";
            if (minutes == 24 * 60) return "0 0 * * *";
            throw new ArgumentException($"cron cannot run every {interval}: give minutes dividing an hour, hours dividing a day, or one day; or a time of day with -At (and -DaysOfWeek), or -Scheduler Systemd.");
        }

        public void Register(ScheduleDefinition s)
        {
            Directory.CreateDirectory(CronFolder);
            var file = Plan(s)[0];
            File.WriteAllText(file,
                $"# VmCheckpoint {s.Kind.ToString().ToLowerInvariant()} schedule {s.Name}, {s.When}. Written by Register-VmCheckpointSchedule.\n" +
                "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nNO_COLOR=1\n" +
                $"{TimeFields(s)} root {s.CommandLine.Replace("%", "\\%")}\n");
            s.Files = new Reporting.TextList { file };
        }

        public void Unregister(ScheduleDefinition s)
        {
            foreach (var f in Plan(s)) File.Delete(f);
        }
    }
}
