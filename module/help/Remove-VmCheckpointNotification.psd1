@{
    Synopsis    = 'Removes the notification settings: no notices are sent afterwards.'
    Description = 'Deletes /etc/vmcheckpoint/notifications.json, with the SMTP password it may hold. Schedules and the health watcher go on, silently. It also clears settings whose file cannot be read any more. To turn off a single channel, give Set-VmCheckpointNotification an empty -SmtpServer or -WebhookUri, or -Syslog:$false.'
    Parameters  = @{ WhatIf = 'Shows the file that would be removed.'; Confirm = 'Asks for confirmation first.' }
    Examples    = @( @{ Title = 'Stop every notice'; Code = 'Remove-VmCheckpointNotification -Confirm:$false'; Remarks = 'Get-VmCheckpointNotification writes nothing afterwards.' } )
}
