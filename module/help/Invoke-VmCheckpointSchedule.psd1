@{
    Synopsis    = 'Runs a schedule once, as its timer does.'
    Description = 'What a registered schedule''s timer runs: the checkpoints (and retention) or one health check. Fails with ResourceBusy, and a non-zero exit code from pwsh -Command, when the previous run of the same schedule is still going; any failure is in the catalog''s job log.'
    Parameters  = @{
        Name        = 'The schedule to run.'
        Repository  = 'Not used: the schedule names its repository.'
        CatalogPath = 'The catalog; the schedule''s own by default.'
    }
    Examples    = @( @{ Title = 'Test a schedule by hand'; Code = 'Invoke-VmCheckpointSchedule -Name checkpoint-web01 -Verbose'; Remarks = 'The same run the timer starts.' } )
}
