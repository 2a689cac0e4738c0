using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Threading;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>One way a notice leaves the machine: mail, syslog, the Event Log, a webhook.</summary>
    public interface INotificationChannel
    {
        /// <summary>"mail", "syslog", "event log", "webhook".</summary>
        string Name { get; }
        /// <summary>Where it delivers, for messages ("smtp.example.com:25", "/dev/log").</summary>
        string Target { get; }
        /// <summary>Delivers the notice or throws; bounded in time by the channel itself.</summary>
        void Send(Notice notice, CancellationToken cancellationToken);
    }

    /// <summary>How one channel fared with one notice.</summary>
    public sealed class NotificationResult
    {
        public NotificationResult(string channel, string target, string? error)
        {
            Channel = channel;
            Target = target;
            Error = error;
        }

        public string Channel { get; }
        public string Target { get; }
        public bool Succeeded => Error is null;
        /// <summary>Why it failed; null when the notice went out.</summary>
        public string? Error { get; }

        public override string ToString() => Succeeded ? $"{Channel} ({Target}): sent" : $"{Channel} ({Target}): {Error}";
    }

    /// <summary>
    /// Sends notices through every channel the settings turn on, each on its own: a channel that fails (a mail server
    /// down, no syslog socket) never stops the others, nor the job that sends them; its failure is a warning on the
    /// job's reporter. Settings are read at each notice, so a long-running watcher follows changes to them.
    /// </summary>
    public sealed class Notifier
    {
        private readonly INotificationSettingsSource _source;
        private readonly IJobReporter _reporter;
        private readonly Func<NotificationSettings, IReadOnlyList<INotificationChannel>> _channels;

        /// <param name="channels">The channels for given settings; <see cref="ChannelsFor"/> when not given (tests hand in their own).</param>
        public Notifier(INotificationSettingsSource source, IJobReporter? reporter = null, Func<NotificationSettings, IReadOnlyList<INotificationChannel>>? channels = null)
        {
            _source = source;
            _reporter = reporter ?? NullJobReporter.Instance;
            _channels = channels ?? ChannelsFor;
        }

        /// <summary>Sends the notice if the settings want its kind. Never throws: what fails is reported and returned.</summary>
        public IReadOnlyList<NotificationResult> Send(Notice notice, CancellationToken cancellationToken = default)
        {
            NotificationSettings? settings;
            try
            {
                settings = _source.Load();
            }
            catch (Exception e)
            {
                _reporter.Warning($"No notification sent ('{notice.Subject}'): the settings cannot be read: {e.Message}");
                return new NotificationResult[0];
            }
            if (settings is null || !settings.Wants(notice.Kind)) return new NotificationResult[0];
            return SendTo(settings, notice, cancellationToken);
        }

        /// <summary>Sends the notice through every channel of these settings, whatever its kind.</summary>
        public IReadOnlyList<NotificationResult> SendTo(NotificationSettings settings, Notice notice, CancellationToken cancellationToken = default)
        {
            var results = new List<NotificationResult>();
            IReadOnlyList<INotificationChannel> channels;
            try
            {
                channels = _channels(settings);
            }
            catch (Exception e)
            {
                _reporter.Warning($"No notification sent ('{notice.Subject}'): {e.Message}");
                return results;
            }
            foreach (var channel in channels)
            {
                try
                {
                    channel.Send(notice, cancellationToken);
                    results.Add(new NotificationResult(channel.Name, channel.Target, null));
                    _reporter.Verbose($"Notice '{notice.Subject}' sent by {channel.Name} to {channel.Target}.");
                }
                catch (Exception e)
                {
                    string why = Describe(e);
                    results.Add(new NotificationResult(channel.Name, channel.Target, why));
                    _reporter.Warning($"The {channel.Name} notice to {channel.Target} failed ('{notice.Subject}'): {why}");
                }
            }
            return results;
        }

        /// <summary>
        /// The channels the settings turn on: syslog first (local and immediate), then mail, then the webhook. Syslog
        /// without a server is the Event Log on Windows and /dev/log (journald or the syslog daemon) elsewhere.
        /// </summary>
        public static IReadOnlyList<INotificationChannel> ChannelsFor(NotificationSettings settings)
        {
            var channels = new List<INotificationChannel>();
            if (settings.Syslog)
            {
                if (string.IsNullOrEmpty(settings.SyslogServer) && RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) channels.Add(new EventLogChannel());
                else channels.Add(new SyslogChannel(string.IsNullOrEmpty(settings.SyslogServer) ? SyslogTarget.Local : SyslogTarget.Parse(settings.SyslogServer!)));
            }
            if (settings.MailEnabled) channels.Add(new MailChannel(settings));
            if (settings.WebhookEnabled) channels.Add(new WebhookChannel(new Uri(settings.WebhookUri!)));
            return channels;
        }

        /// <summary>The message and the inner messages that say more (a socket error under a mail library's wrapper).</summary>
        private static string Describe(Exception e)
        {
            if (e is AggregateException a && a.InnerExceptions.Count == 1) e = a.InnerException!;
            string text = e.Message;
            for (var inner = e.InnerException; inner != null; inner = inner.InnerException)
                if (!string.IsNullOrEmpty(inner.Message) && text.IndexOf(inner.Message, StringComparison.Ordinal) < 0) text += " (" + inner.Message + ")";
            return text;
        }
    }
}
