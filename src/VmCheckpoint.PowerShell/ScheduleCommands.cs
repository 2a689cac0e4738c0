using System;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Runtime.InteropServices;
using VmCheckpoint.Core.Scheduling;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Registers a schedule: a systemd timer (cron where systemd does not run) or a Windows scheduled task.</summary>
    [Cmdlet(VerbsLifecycle.Register, "VmCheckpointSchedule", SupportsShouldProcess = true, DefaultParameterSetName = CheckpointSet)]
    [OutputType(typeof(ScheduleDefinition))]
    public sealed class RegisterVmCheckpointScheduleCommand : VmCheckpointCmdlet
    {
        private const string CheckpointSet = "Checkpoint";
        private const string WatchSet = "Watch";

        /// <summary>VMs to checkpoint (or watch); wildcards are resolved at each run.</summary>
        [Parameter(Mandatory = true, Position = 0, ParameterSetName = CheckpointSet)]
        [Parameter(ParameterSetName = WatchSet)]
        [Alias("VmName")]
        public string[] Name { get; set; } = new string[0];

        /// <summary>The schedule's own name; derived from the VM names by default.</summary>
        [Parameter]
        public string? ScheduleName { get; set; }

        /// <summary>Every so long, counted from the last run (or give -At).</summary>
        [Parameter]
        public TimeSpan Interval { get; set; }

        /// <summary>A local time of day, such as 02:30 (or give -Interval).</summary>
        [Parameter]
        public TimeSpan? At { get; set; }

        /// <summary>The days to run at -At; every day when not given.</summary>
        [Parameter]
        public DayOfWeek[] DaysOfWeek { get; set; } = new DayOfWeek[0];

        /// <summary>The backup window: a run still going after this long stops cleanly and says so.</summary>
        [Parameter]
        public TimeSpan? MaxDuration { get; set; }

        /// <summary>Replaces a schedule of the same name.</summary>
        [Parameter]
        public SwitchParameter Force { get; set; }

        [Parameter(Mandatory = true, ParameterSetName = WatchSet)]
        public SwitchParameter Watch { get; set; }

        [Parameter]
        public string? ConnectionUri { get; set; }

        /// <summary>The VMs' hypervisor: Libvirt (by default) or HyperV.</summary>
        [Parameter]
        [ValidateSet(Core.Hypervisors.HypervisorNames.Libvirt, Core.Hypervisors.HypervisorNames.HyperV, IgnoreCase = true)]
        public string Hypervisor { get; set; } = Core.Hypervisors.HypervisorNames.Libvirt;

        /// <summary>The Hyper-V host (with -Hypervisor HyperV); this computer by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? ComputerName { get; set; }

        [Parameter(ParameterSetName = CheckpointSet)] public SwitchParameter IncludeMemory { get; set; }
        /// <summary>Boot-test each checkpoint the run takes; a failed test fails the run and notifies.</summary>
        [Parameter(ParameterSetName = CheckpointSet)] public SwitchParameter BootTest { get; set; }
        /// <summary>With -BootTest: the console pattern to wait for instead of the guest agent.</summary>
        [Parameter(ParameterSetName = CheckpointSet)] [ValidateNotNullOrEmpty] public string? ConsolePattern { get; set; }
        /// <summary>With -BootTest: how long a copy may take to come up.</summary>
        [Parameter(ParameterSetName = CheckpointSet)] public TimeSpan? BootTimeout { get; set; }
        [Parameter(ParameterSetName = CheckpointSet)] [ValidateRange(0, int.MaxValue)] public int KeepLast { get; set; }
        [Parameter(ParameterSetName = CheckpointSet)] [ValidateRange(0, int.MaxValue)] public int KeepDaily { get; set; }
        [Parameter(ParameterSetName = CheckpointSet)] [ValidateRange(0, int.MaxValue)] public int KeepWeekly { get; set; }
        [Parameter(ParameterSetName = CheckpointSet)] [ValidateRange(0, int.MaxValue)] public int KeepMonthly { get; set; }
        [Parameter(ParameterSetName = WatchSet)] public Core.Health.RecoveryAction Action { get; set; } = Core.Health.RecoveryAction.RestoreLatest;
        [Parameter(ParameterSetName = WatchSet)] public string? TargetConnectionUri { get; set; }

        /// <summary>Systemd, Cron or TaskScheduler; by default what this machine runs.</summary>
        [Parameter]
        [ValidateSet("Systemd", "Cron", "TaskScheduler")]
        public string? Scheduler { get; set; }

        protected override void EndProcessing()
        {
            try
            {
                var repository = OpenRepository();
                var store = new ScheduleStore();
                var kind = Watch ? ScheduleKind.Watch : ScheduleKind.Checkpoint;
                var schedule = new ScheduleDefinition
                {
                    Name = ScheduleName ?? ScheduleDefinition.DefaultName(kind, Name),
                    ScheduleKind = kind,
                    VmNames = new Core.Reporting.TextList(Name),
                    Interval = Interval,
                    At = At,
                    DaysOfWeek = new VmCheckpoint.Core.Reporting.TextList(DaysOfWeek.Select(d => d.ToString())),
                    MaxDuration = MaxDuration,
                    Repository = repository.Path,
                    // The run reads and writes the job log this shell does, in cron's and systemd's bare environment too.
                    CatalogPath = CatalogPath is null ? EnvironmentCatalogPath() : ResolvePath(CatalogPath),
                    PasswordFile = repository.Encrypted ? SchedulePasswordFile(repository.Path) : null,
                    ConnectionUri = ConnectionUri,
                    Hypervisor = Core.Hypervisors.HypervisorNames.Canonical(Hypervisor),
                    ComputerName = ComputerName,
                    IncludeMemory = IncludeMemory,
                    BootTest = BootTest,
                    BootConsolePattern = ConsolePattern,
                    BootTimeout = BootTimeout,
                    KeepLast = KeepLast, KeepDaily = KeepDaily, KeepWeekly = KeepWeekly, KeepMonthly = KeepMonthly,
                    Action = Watch ? Action.ToString() : null,
                    TargetConnectionUri = TargetConnectionUri,
                    PwshCommand = PwshCommand(),
                    ScheduleRoot = store.Root == "/" ? null : Path.GetFullPath(store.Root),
                    ModulePath = ModuleFolder(),
                };
                if (!BootTest && (ConsolePattern != null || BootTimeout != null)) throw new ArgumentException("-ConsolePattern and -BootTimeout describe the boot test: add -BootTest.");
                if (BootTimeout is { } timeout && timeout < TimeSpan.FromSeconds(1)) throw new ArgumentException($"-BootTimeout {timeout} is shorter than a second: give a time span such as 00:02:00.");
                if (ConsolePattern != null) _ = new System.Text.RegularExpressions.Regex(ConsolePattern);
                schedule.Validate();
                var scheduler = WindowsTaskScheduler.Resolve(store, Scheduler, InvokeCommand);
                schedule.Scheduler = scheduler.Name;
                var plan = scheduler.Plan(schedule);
                var existing = store.Find(schedule.Name);
                if (existing != null && !Force)
                {
                    ThrowTerminatingError(new ErrorRecord(new InvalidOperationException(
                        $"A schedule named '{schedule.Name}' exists ({existing.Describe()}, {existing.When}). Give -Force to replace it, " +
                        "-ScheduleName for another one, or Unregister-VmCheckpointSchedule first."), "ScheduleExists", ErrorCategory.ResourceExists, schedule.Name));
                }
                WriteVerbose(scheduler.Explain(schedule));
                if (!ShouldProcess(string.Join(", ", plan), $"Write {scheduler.Name} schedule '{schedule.Name}' {schedule.When}")) return;
                if (existing != null) WindowsTaskScheduler.Resolve(store, existing.Scheduler, InvokeCommand).Unregister(existing);
                scheduler.Register(schedule);
                store.Save(schedule);
                WriteObject(schedule);
            }
            catch (PipelineStoppedException) { throw; }
            catch (Exception e) { ThrowTerminatingError(ToErrorRecord(e, "RegisterSchedule", ScheduleName)); }
            finally { base.EndProcessing(); }
        }

        /// <summary>
        /// The password file an encrypted repository's scheduled runs read: -PasswordFile, else
        /// $env:VMCHECKPOINT_PASSWORD_FILE, made absolute. A password given otherwise is never written into a schedule.
        /// </summary>
        private string SchedulePasswordFile(string repository)
        {
            var file = PasswordFile ?? Environment.GetEnvironmentVariable(Core.Security.RepositorySecret.PasswordFileVariable);
            if (string.IsNullOrEmpty(file))
                ThrowTerminatingError(new ErrorRecord(new Core.Security.RepositoryPasswordException(
                    $"The repository {repository} is encrypted: give the schedule -PasswordFile (a file readable by the account the scheduler runs it as, whose first line is the password). A password given as -Password or $env:VMCHECKPOINT_PASSWORD is never written into a schedule."),
                    "SchedulePasswordFile", ErrorCategory.SecurityError, repository));
            var full = Path.GetFullPath(ResolvePath(file!));
            // Each run reads only this file: it must open the repository now, not fail at night.
            try
            {
                Core.Repository.CheckpointRepository.Open(repository, Core.Security.RepositorySecret.FromFile(full));
            }
            catch (Exception e) when (!(e is PipelineStoppedException))
            {
                ThrowTerminatingError(ToErrorRecord(e, "SchedulePasswordFile", full));
            }
            return full;
        }

        /// <summary>$env:VMCHECKPOINT_CATALOG of this shell, made absolute; null when unset (the run's default is then this machine's).</summary>
        private string? EnvironmentCatalogPath()
        {
            var fromEnvironment = Environment.GetEnvironmentVariable(Core.Catalog.CheckpointCatalog.PathVariable);
            return string.IsNullOrEmpty(fromEnvironment) ? null : ResolvePath(fromEnvironment!);
        }

        /// <summary>The module's folder (where VmCheckpoint.psd1 is): the assembly's own, or the one above its build folder.</summary>
        private static string ModuleFolder()
        {
            var assemblyFolder = Path.GetDirectoryName(typeof(RegisterVmCheckpointScheduleCommand).Assembly.Location)!;
            var parent = Path.GetDirectoryName(assemblyFolder);
            return !File.Exists(Path.Combine(assemblyFolder, "VmCheckpoint.psd1")) && parent != null && File.Exists(Path.Combine(parent, "VmCheckpoint.psd1"))
                ? parent
                : assemblyFolder;
        }

        private static string[] PwshCommand()
        {
            using var me = System.Diagnostics.Process.GetCurrentProcess();
            var exe = me.MainModule!.FileName;
            return string.Equals(Path.GetFileNameWithoutExtension(exe), "dotnet", StringComparison.OrdinalIgnoreCase)
                ? new[] { exe, Environment.GetCommandLineArgs()[0] }
                : new[] { exe };
        }
    }

    /// <summary>Lists registered schedules.</summary>
    [Cmdlet(VerbsCommon.Get, "VmCheckpointSchedule")]
    [OutputType(typeof(ScheduleDefinition))]
    public sealed class GetVmCheckpointScheduleCommand : PSCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [SupportsWildcards]
        [Alias("ScheduleName")]
        public string Name { get; set; } = "*";

        protected override void ProcessRecord()
        {
            var pattern = new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            foreach (var s in new ScheduleStore().List().Where(s => pattern.IsMatch(s.Name))) WriteObject(s);
        }
    }

    /// <summary>Removes a schedule and the scheduler's files.</summary>
    [Cmdlet(VerbsLifecycle.Unregister, "VmCheckpointSchedule", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class UnregisterVmCheckpointScheduleCommand : PSCmdlet
    {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("ScheduleName")]
        public string Name { get; set; } = "";

        protected override void ProcessRecord()
        {
            var store = new ScheduleStore();
            var s = store.Find(Name);
            if (s is null)
            {
                WriteError(new ErrorRecord(new ItemNotFoundException($"No schedule named '{Name}'."), "ScheduleNotFound", ErrorCategory.ObjectNotFound, Name));
                return;
            }
            if (!ShouldProcess(s.Name, "Unregister schedule")) return;
            WindowsTaskScheduler.Resolve(store, s.Scheduler, InvokeCommand).Unregister(s);
            store.Delete(s.Name);
        }
    }

    /// <summary>One run of a schedule: what its timer runs. Fails (non-zero exit) when the previous run is still going.</summary>
    [Cmdlet(VerbsLifecycle.Invoke, "VmCheckpointSchedule", SupportsShouldProcess = true)]
    public sealed class InvokeVmCheckpointScheduleCommand : VmCheckpointCmdlet
    {
        [Parameter(Mandatory = true, Position = 0)]
        public string Name { get; set; } = "";

        protected override void EndProcessing()
        {
            try
            {
                var store = new ScheduleStore();
                var s = store.Find(Name) ?? throw new ItemNotFoundException($"No schedule named '{Name}'.");
                if (CatalogPath is null && s.CatalogPath != null) CatalogPath = s.CatalogPath;
                WriteVerbose($"Schedule '{s.Name}' ({s.When}): {s.Describe()}.");
                if (!ShouldProcess($"schedule '{s.Name}'", "Run once: " + s.Describe())) return;
                foreach (var o in RunJob("Scheduled run " + Name, (reporter, token) => new ScheduledRun(store, Catalog, reporter, Connector).Execute(s, token))) WriteObject(o);
            }
            catch (PipelineStoppedException) { throw; }
            catch (ScheduleOverlapException e) { ThrowTerminatingError(new ErrorRecord(e, "ScheduleOverlap", ErrorCategory.ResourceBusy, Name)); }
            catch (BackupWindowExceededException e) { ThrowTerminatingError(new ErrorRecord(e, "BackupWindowExceeded", ErrorCategory.OperationTimeout, Name)); }
            catch (Exception e) { ThrowTerminatingError(ToErrorRecord(e, "ScheduledRun", Name)); }
            finally { base.EndProcessing(); }
        }
    }
}
