@{
    Synopsis    = 'Sets where scheduled runs and Watch-VmHealth send their notices: mail, syslog (the Event Log on Windows) and a webhook.'
    Description = 'A notice names the schedule or the VM, what failed (or was done), why, and the next step. Scheduled runs (Invoke-VmCheckpointSchedule, as their timers run it) send one when they fail, whole or for some VMs, including when the repository cannot be reached; with -On Always also when they succeed. Watch-VmHealth sends one when it restores a VM from a checkpoint and when it gives up on a VM.

Each channel works on its own: one that fails (a mail server down, no syslog socket) never stops the others nor the job, and shows as a warning of the job. The settings are machine-wide, kept beside the schedules in /etc/vmcheckpoint/notifications.json, written whole or not at all and, on Linux, readable by root alone (mode 0600): it holds the SMTP password when -Credential gives one. Parameters given replace what is stored; the others stay as they were. Run it as root (as an administrator on Windows).'
    Parameters  = @{
        SmtpServer   = 'The SMTP server that mails the notices. An empty string turns mail off.'
        Port         = 'The SMTP port: 25 by default; 465 with -UseSsl is TLS from the first byte (SMTPS), any other port with -UseSsl uses STARTTLS.'
        UseSsl       = 'Send mail over TLS (STARTTLS, or SMTPS on port 465), with the server''s certificate checked. Without it mail goes in plain text, as with Send-MailMessage. -UseSsl:$false turns it off.'
        Credential   = 'The SMTP login. Its password is stored in the settings file, which only root may read (mode 0600); nothing is stored without -Credential. [pscredential]::Empty removes the stored login.'
        From         = 'The sender address of the mails, for example ''VmCheckpoint <backup@example.com>''.'
        To           = 'The recipients of the mails.'
        On           = 'Failure (the default): failed runs, VMs restored by the health watcher and VMs it gave up on. Always: also every scheduled checkpoint run that succeeded.'
        Syslog       = 'Log each notice in the system log: on Linux to /dev/log (journald, or rsyslog or syslog-ng), facility daemon, tag vmcheckpoint; on Windows to the Application event log, source VmCheckpoint. -Syslog:$false turns it off.'
        SyslogServer = 'With -Syslog: another receiver than the local log: udp://HOST:PORT or HOST:PORT (RFC 5424 over UDP; port 514 by default with udp://), or the path of a unix datagram socket. An empty string goes back to the local log.'
        WebhookUri   = 'An http or https address each notice is POSTed to as JSON (text, kind, source, subject, what, why, nextStep, host, time; text is what Slack- and Mattermost-style incoming webhooks show). An empty string turns the webhook off.'
        Test         = 'After saving, send a test notice through every channel (whatever -On says) and write how each fared; a channel that fails is also an error.'
        PassThru     = 'Write the settings as saved (without the password).'
        WhatIf       = 'Shows the settings that would be saved.'
        Confirm      = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Mail failures to the administrators'; Code = 'Set-VmCheckpointNotification -SmtpServer smtp.example.com -Port 587 -UseSsl -Credential (Get-Credential) -From ''VmCheckpoint <backup@example.com>'' -To ops@example.com -Test'; Remarks = 'Failed scheduled runs, restored VMs and VMs given up on are mailed; -Test sends a test mail now.' }
        @{ Title = 'Log every run in the system log and post it to a chat'; Code = 'Set-VmCheckpointNotification -On Always -Syslog -WebhookUri https://chat.example.com/hooks/abc123'; Remarks = 'journalctl -t vmcheckpoint (or /var/log/syslog) shows them; the chat shows the text field.' }
        @{ Title = 'Send syslog lines to a central server'; Code = 'Set-VmCheckpointNotification -Syslog -SyslogServer udp://logs.example.com:514'; Remarks = 'RFC 5424 lines over UDP, with this host''s name.' }
        @{ Title = 'Turn mail off, keep the rest'; Code = 'Set-VmCheckpointNotification -SmtpServer '''''; Remarks = 'An empty string turns a channel off.' }
    )
}
