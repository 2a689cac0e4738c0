using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Runtime.InteropServices;
using VmCheckpoint.Core.Scheduling;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Windows Task Scheduler, through the ScheduledTasks module: only a PowerShell host reaches it, so it lives in the
    /// cmdlet assembly, as the Hyper-V runspace host does. Tasks go under \VmCheckpoint\.
    /// </summary>
    internal sealed class WindowsTaskScheduler : IScheduler
    {
        public const string SchedulerName = "TaskScheduler";
        private readonly CommandInvocationIntrinsics _invoke;

        public WindowsTaskScheduler(CommandInvocationIntrinsics invoke)
        {
            _invoke = invoke;
        }

        public string Name => SchedulerName;

        public IReadOnlyList<string> Plan(ScheduleDefinition schedule) => new[] { $@"\VmCheckpoint\{schedule.Name}" };

        public string Explain(ScheduleDefinition schedule) => "Task Scheduler registration: " + Script(schedule);

        public void Register(ScheduleDefinition schedule) => _invoke.InvokeScript(Script(schedule));

        public void Unregister(ScheduleDefinition schedule) =>
            _invoke.InvokeScript($"Unregister-ScheduledTask -TaskPath '\\VmCheckpoint\\' -TaskName {Quote(schedule.Name)} -Confirm:$false");

        /// <summary>The scheduler of that name (null: what this machine runs): Task Scheduler on Windows, else systemd or cron.</summary>
        public static IScheduler Resolve(ScheduleStore store, string? name, CommandInvocationIntrinsics invoke)
        {
            name ??= RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? SchedulerName : store.DefaultUnixScheduler().Name;
            return string.Equals(name, SchedulerName, StringComparison.OrdinalIgnoreCase) ? new WindowsTaskScheduler(invoke) : store.Unix(name);
        }

        /// <summary>The ScheduledTasks calls that register the task.</summary>
        internal static string Script(ScheduleDefinition s)
        {
            var args = "-NoProfile -NonInteractive -Command \"" + s.Script.Replace("\"", "\\\"") + "\"";
            return $"$action = New-ScheduledTaskAction -Execute {Quote(s.PwshCommand[0])} -Argument {Quote(string.Join(" ", s.PwshCommand.Skip(1).Select(a => "\"" + a + "\"").Concat(new[] { args })))}; " +
                   $"$trigger = {Trigger(s)}; " +
                   "$settings = New-ScheduledTaskSettingsSet -MultipleInstancesPolicy IgnoreNew -StartWhenAvailable; " +
                   $"Register-ScheduledTask -TaskPath '\\VmCheckpoint\\' -TaskName {Quote(s.Name)} -Action $action -Trigger $trigger -Settings $settings -User 'SYSTEM' -RunLevel Highest -Force";
        }

        /// <summary>Daily or weekly at a time of day, or repeated every interval from now.</summary>
        internal static string Trigger(ScheduleDefinition s)
        {
            if (!(s.At is { } at)) return $"New-ScheduledTaskTrigger -Once -At (Get-Date) -RepetitionInterval (New-TimeSpan -Seconds {(long)s.Interval.TotalSeconds})";
            string time = Quote(ScheduleDefinition.TimeOfDay(at));
            return s.DaysOfWeek.Count == 0
                ? $"New-ScheduledTaskTrigger -Daily -At {time}"
                : $"New-ScheduledTaskTrigger -Weekly -DaysOfWeek {string.Join(",", s.OrderedDays)} -At {time}";
        }

        private static string Quote(string x) => "'" + x.Replace("'", "''") + "'";
    }
}
