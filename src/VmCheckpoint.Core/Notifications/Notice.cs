using System;
using System.Globalization;
using System.Text;

namespace VmCheckpoint.Core.Notifications
{
    public enum NoticeKind
    {
        /// <summary>A scheduled run failed, whole or for some of its VMs.</summary>
        Failure,
        /// <summary>A scheduled run checkpointed every VM (sent with -On Always only).</summary>
        Success,
        /// <summary>The health watcher brought a VM back from a checkpoint.</summary>
        Restored,
        /// <summary>The health watcher reached its cap of attempts on a VM and stopped trying.</summary>
        GaveUp,
        /// <summary>Set-VmCheckpointNotification -Test.</summary>
        Test,
    }

    /// <summary>
    /// One message for an administrator: what happened to which schedule or VM, why, and what to do next. Every channel
    /// renders the same notice: mail as <see cref="Body"/>, syslog and the Event Log as <see cref="OneLine"/>, the
    /// webhook as JSON of the fields.
    /// </summary>
    public sealed class Notice
    {
        public NoticeKind Kind { get; set; }
        /// <summary>"schedule" or "VM": what <see cref="Source"/> names.</summary>
        public string SourceKind { get; set; } = "";
        /// <summary>The schedule's or the VM's name.</summary>
        public string Source { get; set; } = "";
        public string Subject { get; set; } = "";
        public string What { get; set; } = "";
        public string Why { get; set; } = "";
        public string NextStep { get; set; } = "";
        /// <summary>The machine that sends the notice (where the schedule or the watcher runs).</summary>
        public string Host { get; set; } = Environment.MachineName;
        public DateTime Time { get; set; } = DateTime.UtcNow;

        /// <summary>Failures and give-ups are errors; a restore is a warning (the VM runs again, on older data).</summary>
        public bool IsError => Kind == NoticeKind.Failure || Kind == NoticeKind.GaveUp;

        public string TimeText => Time.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);

        /// <summary>The mail's text.</summary>
        public string Body
        {
            get
            {
                var b = new StringBuilder();
                b.Append(Subject).Append('\n').Append('\n');
                b.Append("What:      ").Append(What).Append('\n');
                b.Append("Why:       ").Append(Why).Append('\n');
                b.Append("Next step: ").Append(NextStep).Append('\n').Append('\n');
                string label = SourceKind.Length == 0 ? "Source" : char.ToUpperInvariant(SourceKind[0]) + SourceKind.Substring(1);
                b.Append((label + ":").PadRight(11)).Append(Source).Append('\n');
                b.Append("Host:      ").Append(Host).Append('\n');
                b.Append("Time:      ").Append(TimeText).Append('\n');
                b.Append("\n-- \nVmCheckpoint\n");
                return b.ToString();
            }
        }

        /// <summary>The notice on one line, for logs: no line breaks, whatever the messages held.</summary>
        public string OneLine => Flatten($"{Subject}. What: {What} Why: {Why} Next step: {NextStep}");

        internal static string Flatten(string s)
        {
            var b = new StringBuilder(s.Length);
            bool space = false;
            foreach (char c in s)
            {
                if (char.IsControl(c) || char.IsWhiteSpace(c))
                {
                    if (!space && b.Length > 0) b.Append(' ');
                    space = true;
                }
                else
                {
                    b.Append(c);
                    space = false;
                }
            }
            return b.ToString().TrimEnd();
        }
    }
}
