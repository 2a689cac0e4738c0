@{
    Synopsis    = 'Lists registered schedules.'
    Description = 'One object per schedule: its name, kind, VMs, interval, scheduler, the command line it runs and the files it wrote.'
    Parameters  = @{ Name = 'Schedule names; wildcards allowed.' }
    Examples    = @( @{ Title = 'All schedules'; Code = 'Get-VmCheckpointSchedule | Format-List Name, Kind, Interval, Scheduler, CommandLine'; Remarks = 'The command line can be run by hand to test it.' } )
}
