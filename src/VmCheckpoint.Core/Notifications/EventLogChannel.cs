using System;
using System.Reflection;
using System.Threading;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>
    /// A notice in the Windows Application log, source VmCheckpoint. netstandard2.0 has no EventLog type, so it is
    /// reached by name: System.dll on Windows PowerShell 5.1, System.Diagnostics.EventLog.dll in PowerShell 7. Not
    /// tested here (Linux): the Linux channels are.
    /// </summary>
    internal sealed class EventLogChannel : INotificationChannel
    {
        public const string Source = "VmCheckpoint";
        private const string Log = "Application";

        public string Name => "event log";
        public string Target => $"{Log} log, source {Source}";

        /// <summary>EventLogEntryType: Error 1, Warning 2, Information 4.</summary>
        internal static int EntryType(NoticeKind kind) => kind switch
        {
            NoticeKind.Failure => 1,
            NoticeKind.GaveUp => 1,
            NoticeKind.Restored => 2,
            _ => 4,
        };

        /// <summary>Stable event ids, for event log filters and forwarding rules.</summary>
        internal static int EventId(NoticeKind kind) => kind switch
        {
            NoticeKind.Failure => 1001,
            NoticeKind.GaveUp => 1002,
            NoticeKind.Restored => 2001,
            NoticeKind.Success => 3001,
            _ => 3000,
        };

        public void Send(Notice notice, CancellationToken cancellationToken)
        {
            var eventLog = Type.GetType("System.Diagnostics.EventLog, System.Diagnostics.EventLog")
                ?? Type.GetType("System.Diagnostics.EventLog, System, Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089")
                ?? throw new PlatformNotSupportedException("The Windows Event Log cannot be reached from this PowerShell (no System.Diagnostics.EventLog): give -SyslogServer instead.");
            var entryType = eventLog.Assembly.GetType("System.Diagnostics.EventLogEntryType", throwOnError: true)!;
            try
            {
                // Registering a source needs an administrator; Set-VmCheckpointNotification -Test, run as one, does it once.
                if (!(bool)eventLog.GetMethod("SourceExists", new[] { typeof(string) })!.Invoke(null, new object[] { Source })!)
                    eventLog.GetMethod("CreateEventSource", new[] { typeof(string), typeof(string) })!.Invoke(null, new object[] { Source, Log });
                eventLog.GetMethod("WriteEntry", new[] { typeof(string), typeof(string), entryType, typeof(int) })!
                    .Invoke(null, new object[] { Source, notice.Body, Enum.ToObject(entryType, EntryType(notice.Kind)), EventId(notice.Kind) });
            }
            catch (TargetInvocationException e) when (e.InnerException != null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            }
        }
    }
}
