@{
    Synopsis    = 'Removes a schedule.'
    Description = 'Disables and deletes the systemd timer and service, the cron file or the scheduled task, and the schedule definition. Checkpoints already taken stay.'
    Parameters  = @{ Name = 'The schedule to remove (bound from Get-VmCheckpointSchedule output).'; WhatIf = 'Shows what would be removed.'; Confirm = 'Asks for confirmation first.' }
    Examples    = @( @{ Title = 'Remove every schedule'; Code = 'Get-VmCheckpointSchedule | Unregister-VmCheckpointSchedule -Confirm:$false'; Remarks = 'Nothing runs unattended afterwards.' } )
}
