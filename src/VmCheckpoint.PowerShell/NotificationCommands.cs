using System;
using System.Linq;
using System.Management.Automation;
using System.Threading;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Sets where scheduled runs and the health watcher send their notices: mail, syslog (the Event Log on Windows) and a
    /// webhook. Parameters given replace what is stored; the others stay.
    /// </summary>
    [Cmdlet(VerbsCommon.Set, "VmCheckpointNotification", SupportsShouldProcess = true)]
    [OutputType(typeof(NotificationSettingsInfo), typeof(NotificationResult))]
    public sealed class SetVmCheckpointNotificationCommand : PSCmdlet
    {
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();

        /// <summary>The SMTP server; an empty string turns mail off.</summary>
        [Parameter]
        [AllowEmptyString]
        public string? SmtpServer { get; set; }

        [Parameter]
        [ValidateRange(1, 65535)]
        public int Port { get; set; }

        [Parameter]
        public SwitchParameter UseSsl { get; set; }

        /// <summary>The SMTP login; its password is stored in a file only root may read. [pscredential]::Empty removes both.</summary>
        [Parameter]
        [Credential]
        public PSCredential? Credential { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? From { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? To { get; set; }

        /// <summary>Failure (failed runs, restored VMs, VMs given up on) or Always (also every successful scheduled run).</summary>
        [Parameter]
        public NotifyOn On { get; set; }

        [Parameter]
        public SwitchParameter Syslog { get; set; }

        /// <summary>udp://HOST:PORT or a unix socket's path instead of the local log; an empty string goes back to it.</summary>
        [Parameter]
        [AllowEmptyString]
        public string? SyslogServer { get; set; }

        /// <summary>An http(s) address each notice is POSTed to as JSON; an empty string turns the webhook off.</summary>
        [Parameter]
        [AllowEmptyString]
        public string? WebhookUri { get; set; }

        /// <summary>After saving, send a test notice through every channel and report how each fared.</summary>
        [Parameter]
        public SwitchParameter Test { get; set; }

        [Parameter]
        public SwitchParameter PassThru { get; set; }

        protected override void StopProcessing() => _stop.Cancel();

        private bool Given(string name) => MyInvocation.BoundParameters.ContainsKey(name);

        protected override void EndProcessing()
        {
            var store = new NotificationStore();
            NotificationSettings settings;
            try
            {
                settings = store.Load() ?? new NotificationSettings();
                Apply(settings);
                settings.Validate();
            }
            catch (Exception e)
            {
                ThrowTerminatingError(Error(e, "SetNotification", store.Path));
                return;
            }
            bool changes = MyInvocation.BoundParameters.Keys.Any(k => k != nameof(Test) && k != nameof(PassThru) && !Cmdlet.CommonParameters.Contains(k) && !Cmdlet.OptionalCommonParameters.Contains(k));
            if (changes)
            {
                if (settings.HasPassword && !settings.UseSsl && !IsLoopback(settings.SmtpServer))
                    WriteWarning($"The SMTP password will cross the network to {settings.SmtpServer} unencrypted: add -UseSsl.");
                if (!ShouldProcess(store.Path, "Save notification settings (" + Describe(settings) + ")")) return;
                try
                {
                    store.Save(settings);
                }
                catch (Exception e)
                {
                    ThrowTerminatingError(Error(e, "SetNotification", store.Path));
                }
            }
            if (Test) SendTest(settings);
            if (PassThru) WriteObject(new NotificationSettingsInfo(settings, store.Path));
        }

        private void Apply(NotificationSettings s)
        {
            if (Given(nameof(SmtpServer))) s.SmtpServer = string.IsNullOrWhiteSpace(SmtpServer) ? null : SmtpServer!.Trim();
            if (Given(nameof(Port))) s.Port = Port;
            if (Given(nameof(UseSsl))) s.UseSsl = UseSsl;
            if (Given(nameof(From))) s.From = From;
            if (Given(nameof(To))) s.To = To!.ToList();
            if (Given(nameof(On))) s.On = On;
            if (Given(nameof(Syslog))) s.Syslog = Syslog;
            if (Given(nameof(SyslogServer))) s.SyslogServer = string.IsNullOrWhiteSpace(SyslogServer) ? null : SyslogServer!.Trim();
            if (Given(nameof(WebhookUri))) s.WebhookUri = string.IsNullOrWhiteSpace(WebhookUri) ? null : WebhookUri!.Trim();
            if (Given(nameof(Credential)))
            {
                if (Credential is null || Credential == PSCredential.Empty)
                {
                    s.UserName = null;
                    s.Password = null;
                }
                else
                {
                    s.UserName = Credential.UserName;
                    string password = Credential.GetNetworkCredential().Password;
                    s.Password = string.IsNullOrEmpty(password) ? null : password;
                }
            }
        }

        private void SendTest(NotificationSettings settings)
        {
            if (!settings.AnyChannel)
            {
                WriteError(new ErrorRecord(new InvalidOperationException("No channel is set: give -SmtpServer, -Syslog or -WebhookUri."),
                    "SetNotification.NoChannel", ErrorCategory.InvalidOperation, null));
                return;
            }
            var notice = new Notice
            {
                Kind = NoticeKind.Test,
                SourceKind = "test",
                Source = "Set-VmCheckpointNotification -Test",
                Subject = $"VmCheckpoint: test notice from {Environment.MachineName}",
                What = "A test notice, sent by Set-VmCheckpointNotification -Test.",
                Why = "Someone checked that notices arrive here.",
                NextStep = "None: this channel works.",
            };
            foreach (var result in new Notifier(new NotificationStore(), new VerboseReporter(this)).SendTo(settings, notice, _stop.Token))
            {
                WriteObject(result);
                if (!result.Succeeded)
                    WriteError(new ErrorRecord(new InvalidOperationException($"The test notice by {result.Channel} to {result.Target} failed: {result.Error}"),
                        "SetNotification.TestFailed", ErrorCategory.ConnectionError, result.Target));
            }
        }

        private static string Describe(NotificationSettings s)
        {
            var channels = new[]
            {
                s.MailEnabled ? $"mail to {string.Join(", ", s.To)} by {s.SmtpServer}:{s.EffectivePort}" : null,
                s.Syslog ? "syslog" + (s.SyslogServer is null ? "" : " at " + s.SyslogServer) : null,
                s.WebhookEnabled ? "webhook " + new Uri(s.WebhookUri!).GetLeftPart(UriPartial.Path) : null,
            }.Where(c => c != null);
            string list = string.Join("; ", channels);
            return $"on {s.On}: {(list.Length == 0 ? "no channel" : list)}";
        }

        private static bool IsLoopback(string? host) =>
            host != null && (host == "localhost" || (System.Net.IPAddress.TryParse(host, out var ip) && System.Net.IPAddress.IsLoopback(ip)));

        internal static ErrorRecord Error(Exception e, string operation, object? target)
        {
            var (category, failure) = VmCheckpointCmdlet.Classify(e);
            return new ErrorRecord(e, operation + "." + failure, category, target);
        }

        /// <summary>Shows what the notifier did as verbose messages; failures become error records instead of warnings.</summary>
        private sealed class VerboseReporter : IJobReporter
        {
            private readonly Cmdlet _cmdlet;
            public VerboseReporter(Cmdlet cmdlet) { _cmdlet = cmdlet; }
            public void Progress(string activity, string status, int percent) { }
            public void Verbose(string message) => _cmdlet.WriteVerbose(message);
            public void Warning(string message) => _cmdlet.WriteVerbose(message);
        }
    }

    /// <summary>Shows the notification settings, without the SMTP password (HasPassword says whether one is stored).</summary>
    [Cmdlet(VerbsCommon.Get, "VmCheckpointNotification")]
    [OutputType(typeof(NotificationSettingsInfo))]
    public sealed class GetVmCheckpointNotificationCommand : PSCmdlet
    {
        protected override void EndProcessing()
        {
            var store = new NotificationStore();
            try
            {
                var settings = store.Load();
                if (settings is null) WriteVerbose($"No notification settings in {store.Path}.");
                else WriteObject(new NotificationSettingsInfo(settings, store.Path));
            }
            catch (Exception e)
            {
                ThrowTerminatingError(SetVmCheckpointNotificationCommand.Error(e, "GetNotification", store.Path));
            }
        }
    }

    /// <summary>Removes the notification settings: no notices are sent afterwards.</summary>
    [Cmdlet(VerbsCommon.Remove, "VmCheckpointNotification", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
    public sealed class RemoveVmCheckpointNotificationCommand : PSCmdlet
    {
        protected override void EndProcessing()
        {
            var store = new NotificationStore();
            if (!System.IO.File.Exists(store.Path))
            {
                WriteError(new ErrorRecord(new ItemNotFoundException($"No notification settings in {store.Path}."), "RemoveNotification.NotFound", ErrorCategory.ObjectNotFound, store.Path));
                return;
            }
            if (!ShouldProcess(store.Path, "Remove notification settings")) return;
            try
            {
                store.Remove();
            }
            catch (Exception e)
            {
                ThrowTerminatingError(SetVmCheckpointNotificationCommand.Error(e, "RemoveNotification", store.Path));
            }
        }
    }
}
