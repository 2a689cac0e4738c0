using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>Which notices are sent.</summary>
    public enum NotifyOn
    {
        /// <summary>Failed runs, VMs restored by the health watcher and VMs it gave up on.</summary>
        Failure,
        /// <summary>All of those, and every scheduled checkpoint run that succeeded.</summary>
        Always,
    }

    /// <summary>
    /// Where notices go: mail (SMTP), syslog (journald or a syslog daemon on Linux, the Event Log on Windows) and a
    /// webhook (JSON POST). Each channel is on when its settings are there. Kept machine-wide by
    /// <see cref="NotificationStore"/>, in a file only root reads: it may hold the SMTP password.
    /// </summary>
    public sealed class NotificationSettings
    {
        public const int DefaultSmtpPort = 25;

        public NotifyOn On { get; set; } = NotifyOn.Failure;

        /// <summary>The SMTP server's host name; no mail is sent without it.</summary>
        public string? SmtpServer { get; set; }
        /// <summary>The SMTP port; <see cref="DefaultSmtpPort"/> when null.</summary>
        public int? Port { get; set; }
        /// <summary>TLS: on connect for port 465, STARTTLS (required) on any other port. Without it, mail goes in plain text.</summary>
        public bool UseSsl { get; set; }
        public string? From { get; set; }
        public List<string> To { get; set; } = new List<string>();
        /// <summary>The SMTP login; none when null.</summary>
        public string? UserName { get; set; }
        /// <summary>The SMTP password, stored only when given (hence the file's mode 0600).</summary>
        public string? Password { get; set; }

        /// <summary>Notices to the system log: journald or syslog on Linux, the Event Log on Windows.</summary>
        public bool Syslog { get; set; }
        /// <summary>
        /// Another syslog receiver than the local one: "udp://HOST:PORT" or "HOST:PORT" (RFC 5424 over UDP), or the path
        /// of a unix datagram socket. Null: /dev/log on Linux (journald or the syslog daemon), the Event Log on Windows.
        /// </summary>
        public string? SyslogServer { get; set; }

        /// <summary>An http or https address each notice is POSTed to as JSON.</summary>
        public string? WebhookUri { get; set; }

        [BsonIgnore] public int EffectivePort => Port ?? DefaultSmtpPort;
        [BsonIgnore] public bool HasPassword => !string.IsNullOrEmpty(Password);
        [BsonIgnore] public bool MailEnabled => !string.IsNullOrEmpty(SmtpServer);
        [BsonIgnore] public bool WebhookEnabled => !string.IsNullOrEmpty(WebhookUri);
        [BsonIgnore] public bool AnyChannel => MailEnabled || Syslog || WebhookEnabled;

        /// <summary>Whether a notice of this kind is sent under <see cref="On"/>.</summary>
        public bool Wants(NoticeKind kind) => On == NotifyOn.Always || kind != NoticeKind.Success;

        /// <summary>Refuses settings that could never deliver, naming the setting to fix.</summary>
        public void Validate()
        {
            if (MailEnabled)
            {
                if (Port is int p && (p < 1 || p > 65535)) throw new ArgumentException($"-Port {p} is not a TCP port (1-65535).");
                if (string.IsNullOrWhiteSpace(From)) throw new ArgumentException("Mail needs a sender: give -From.");
                if (To.Count == 0 || To.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("Mail needs recipients: give -To.");
                foreach (var address in new[] { From! }.Concat(To))
                    if (!MimeKit.MailboxAddress.TryParse(address, out _)) throw new ArgumentException($"'{address}' is not a mail address.");
            }
            if (HasPassword && string.IsNullOrEmpty(UserName)) throw new ArgumentException("A password without a user name: give -Credential with both.");
            if (WebhookEnabled)
            {
                if (!Uri.TryCreate(WebhookUri, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
                    throw new ArgumentException($"-WebhookUri '{WebhookUri}' is not an http or https address.");
            }
            if (!string.IsNullOrEmpty(SyslogServer)) SyslogTarget.Parse(SyslogServer!);
        }

        internal NotificationSettings Clone() => Parse(Serialize(), "a copy");

        private static BsonMapper Mapper() => new BsonMapper { EnumAsInteger = false, TrimWhitespace = false, EmptyStringToNull = false, SerializeNullValues = false };

        internal byte[] Serialize() => Encoding.UTF8.GetBytes(JsonSerializer.Serialize(Mapper().ToDocument(this), indent: true));

        internal static NotificationSettings Parse(byte[] content, string source)
        {
            try
            {
                return Mapper().ToObject<NotificationSettings>((BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)));
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is FormatException || e is ArgumentException)
            {
                throw new InvalidDataException($"{source}: not notification settings ({e.Message}).");
            }
        }
    }
}
