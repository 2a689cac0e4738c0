using System;
using System.Threading;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>A notice as a plain-text mail, through MailKit (System.Net.Mail is obsolete and speaks no modern TLS rules).</summary>
    internal sealed class MailChannel : INotificationChannel
    {
        /// <summary>For connecting and for each SMTP command: a dead server must not hold a scheduled run for minutes.</summary>
        public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

        private readonly NotificationSettings _settings;

        public MailChannel(NotificationSettings settings)
        {
            _settings = settings;
        }

        public string Name => "mail";
        public string Target => $"{_settings.SmtpServer}:{_settings.EffectivePort}";

        /// <summary>TLS on connect for port 465 (SMTPS), STARTTLS on any other; none without -UseSsl, as Send-MailMessage.</summary>
        internal static SecureSocketOptions Security(NotificationSettings s) =>
            !s.UseSsl ? SecureSocketOptions.None : s.EffectivePort == 465 ? SecureSocketOptions.SslOnConnect : SecureSocketOptions.StartTls;

        internal static MimeMessage Message(NotificationSettings s, Notice notice)
        {
            var message = new MimeMessage();
            message.From.Add(MailboxAddress.Parse(s.From ?? ""));
            foreach (var to in s.To) message.To.Add(MailboxAddress.Parse(to));
            message.Subject = notice.Subject;
            message.Date = new DateTimeOffset(notice.Time.ToUniversalTime());
            // For mail rules and filters: what happened, without parsing the subject.
            message.Headers.Add("X-VmCheckpoint-Kind", notice.Kind.ToString());
            message.Headers.Add("X-VmCheckpoint-Source", Notice.Flatten(notice.SourceKind + " " + notice.Source));
            message.Body = new TextPart("plain") { Text = notice.Body };
            return message;
        }

        public void Send(Notice notice, CancellationToken cancellationToken)
        {
            var message = Message(_settings, notice);
            using var client = new SmtpClient { Timeout = (int)Timeout.TotalMilliseconds };
            client.Connect(_settings.SmtpServer ?? "", _settings.EffectivePort, Security(_settings), cancellationToken);
            if (!string.IsNullOrEmpty(_settings.UserName)) client.Authenticate(_settings.UserName!, _settings.Password ?? "", cancellationToken);
            client.Send(message, cancellationToken);
            client.Disconnect(quit: true, cancellationToken);
        }
    }
}
