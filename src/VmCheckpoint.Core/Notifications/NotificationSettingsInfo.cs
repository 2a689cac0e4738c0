using System.Collections.Generic;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>The settings as Get-VmCheckpointNotification shows them: never the password, only whether there is one.</summary>
    public sealed class NotificationSettingsInfo
    {
        public NotificationSettingsInfo(NotificationSettings s, string path)
        {
            On = s.On.ToString();
            SmtpServer = s.SmtpServer;
            Port = s.MailEnabled ? s.EffectivePort : (int?)null;
            UseSsl = s.UseSsl;
            From = s.From;
            To = s.To.ToArray();
            UserName = s.UserName;
            HasPassword = s.HasPassword;
            Syslog = s.Syslog;
            SyslogServer = s.SyslogServer;
            WebhookUri = s.WebhookUri;
            Path = path;
        }

        /// <summary>Failure or Always.</summary>
        public string On { get; }
        public string? SmtpServer { get; }
        public int? Port { get; }
        public bool UseSsl { get; }
        public string? From { get; }
        public IReadOnlyList<string> To { get; }
        public string? UserName { get; }
        public bool HasPassword { get; }
        public bool Syslog { get; }
        public string? SyslogServer { get; }
        public string? WebhookUri { get; }
        /// <summary>The file the settings are kept in.</summary>
        public string Path { get; }
    }
}
