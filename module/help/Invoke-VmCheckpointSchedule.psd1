@{
    Synopsis    = 'Runs a schedule once, as its timer does.'
    Description = 'What a registered schedule''s timer runs: the checkpoints (and retention) or one health check. Fails with ResourceBusy, and a non-zero exit code from pwsh -Command, when the previous run of the same schedule is still going, and with OperationTimeout when it goes past the schedule''s backup window (-MaxDuration); any failure is in the catalog''s job log and reaches the notification settings.'
    Parameters  = @{
        Name        = 'The schedule to run.'
        Repository  = 'Not used: the schedule names its repository.'
        CatalogPath = 'The catalog; the schedule''s own by default.'
        WhatIf      = 'Says what the run would do (which VMs, repository, retention and window) and does nothing.'
        Confirm     = 'Asks for confirmation first.'
    }
    Examples    = @( @{ Title = 'Test a schedule by hand'; Code = 'Invoke-VmCheckpointSchedule -Name checkpoint-web01 -Verbose'; Remarks = 'The same run the timer starts.' }
    @{ Title = 'See what a schedule would do'; Code = 'Invoke-VmCheckpointSchedule -Name checkpoint-web01 -WhatIf'; Remarks = 'What if: ... Run once: checkpoint web01 into /mnt/backup/repo, then keep last 6.' } )
}
