@{
    Synopsis    = 'Shows where notices are sent.'
    Description = 'Reads the machine-wide notification settings (/etc/vmcheckpoint/notifications.json) that Set-VmCheckpointNotification writes. The SMTP password is never shown: HasPassword says whether one is stored. Writes nothing when no settings exist.'
    Parameters  = @{}
    Examples    = @(
        @{ Title = 'Show the settings'; Code = 'Get-VmCheckpointNotification'; Remarks = 'On, SmtpServer, Port, UseSsl, From, To, UserName, HasPassword, Syslog, SyslogServer, WebhookUri and the file they are kept in.' }
    )
}
