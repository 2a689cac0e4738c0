@{
    Synopsis    = 'Schedules checkpoints (or the health watcher) to run unattended.'
    Description = 'Writes a systemd service and timer (/etc/systemd/system/vmcheckpoint-<name>.*, enabled when systemd runs the machine), a cron file (/etc/cron.d/vmcheckpoint-<name>, where systemd does not run) or, on Windows, a scheduled task under \VmCheckpoint\ through the ScheduledTasks module. Each runs pwsh with this module: Invoke-VmCheckpointSchedule -Name <name>, which checkpoints the VMs (then applies the retention policy) or runs the health watcher once. A schedule runs every -Interval, or at a time of day (-At, on -DaysOfWeek or every day): a systemd calendar timer with Persistent=true (a run missed while the host was off comes at the next boot), cron fields, or a daily or weekly Task Scheduler trigger. A run that finds the previous one still going exits at once with a clear error and a non-zero exit code; a run past its backup window (-MaxDuration) stops the VM under way (undoing what it began), leaves the others for the next run and fails saying so; a failed run leaves its error in the catalog''s job log and reaches the notification settings (Set-VmCheckpointNotification). The run uses the repository and the catalog this shell uses when registering, in the scheduler''s bare environment too. A schedule of the same name is replaced only with -Force. The schedule definition is kept in /etc/vmcheckpoint/schedules.'
    Parameters  = @{
        BootTest       = 'Boot-test each checkpoint the run takes, as Test-VmCheckpoint -Boot does (libvirt only): an isolated copy with no network boots from it, and the run fails and notifies when it does not come up. The outcome is recorded on the checkpoint (Watch-VmHealth prefers checkpoints that passed).'
        ConsolePattern = 'With -BootTest: a regular expression the copy''s serial console must show; without it, the guest agent must answer.'
        BootTimeout    = 'With -BootTest: how long the copy may take to come up, as a time span (00:03:00). 5 minutes by default.'
        Name                = 'VMs to checkpoint or watch (wildcards are resolved at each run).'
        ScheduleName        = 'The schedule''s name (letters, digits, - and _); derived from the VM names by default (checkpoint-web01-db01; a lone * gives checkpoint-all, web* gives checkpoint-web-any).'
        Interval            = 'How often to run, for example (New-TimeSpan -Hours 4) or 04:00:00. Cron needs minutes dividing an hour, hours dividing a day, or one day. Give -Interval or -At.'
        At                  = 'A local time of day to run at, such as 02:30 (cron: whole minutes). Give -Interval or -At.'
        DaysOfWeek          = 'With -At: the days to run on, such as Monday, Friday; every day when not given.'
        MaxDuration         = 'The backup window, such as 02:00:00: a run still going after this long stops cleanly (the VM under way is undone, the rest left for the next run) and fails saying which VMs were and were not checkpointed.'
        Force               = 'Replaces a schedule of the same name. Without it, an existing name is a ResourceExists error.'
        Watch               = 'Schedule Watch-VmHealth -Once instead of checkpoints.'
        ConnectionUri       = 'The libvirt host (qemu:///system by default).'
        Hypervisor          = 'The VMs'' hypervisor: Libvirt (the default) or HyperV (through the Hyper-V module, as Invoke-VmCheckpoint -Hypervisor HyperV does).'
        ComputerName        = 'With -Hypervisor HyperV: the Hyper-V host (this computer by default).'
        IncludeMemory       = 'Take the memory state with each checkpoint.'
        KeepLast            = 'After each run, keep the newest N checkpoints of each VM (with the other Keep rules).'
        KeepDaily           = 'After each run, keep the newest checkpoint of each of the last N days.'
        KeepWeekly          = 'After each run, keep the newest checkpoint of each of the last N weeks.'
        KeepMonthly         = 'After each run, keep the newest checkpoint of each of the last N months.'
        Action              = 'For -Watch: Restart, RestoreLatest or RestoreElsewhere.'
        TargetConnectionUri = 'For -Watch: the host to restore on when the VM''s own host cannot help.'
        Scheduler           = 'Systemd, Cron or TaskScheduler; by default what this machine runs.'
        Repository          = 'The repository: a folder, a share, or s3://bucket/prefix. Defaults to $env:VMCHECKPOINT_REPOSITORY. For S3, the scheduled runs find their keys and endpoint as the AWS tools do: in ~/.aws/credentials and ~/.aws/config (endpoint_url) of the account that runs them, since a timer does not inherit this session''s environment.'
        PasswordFile        = 'For an encrypted repository: the file whose first line is its password, which every scheduled run reads (readable by the account the scheduler runs as, and by nobody else). Defaults to $env:VMCHECKPOINT_PASSWORD_FILE. An encrypted repository without one is refused: a password given with -Password or $env:VMCHECKPOINT_PASSWORD opens the repository here but is never written into a schedule.'
        Password            = 'The password of an encrypted repository, to open it now; the schedule itself reads -PasswordFile.'
        CatalogPath         = 'The catalog the scheduled runs use. Defaults to $env:VMCHECKPOINT_CATALOG of this shell, else the machine-wide catalog (/var/lib/vmcheckpoint/catalog.db for root, %ProgramData%\VmCheckpoint for administrators), which is what an admin''s shell reads.'
        WhatIf              = 'Shows which files (or which scheduled task) would be written.'
        Confirm             = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Checkpoint every VM every four hours, keeping a week of dailies'; Code = 'Register-VmCheckpointSchedule -Name * -Interval 04:00:00 -KeepLast 6 -KeepDaily 7 -Repository /mnt/backup/repo'; Remarks = 'A systemd timer (or cron file) that runs until unregistered.' }
        @{ Title = 'Checkpoint the web servers at 01:30 on weeknights, within two hours'; Code = 'Register-VmCheckpointSchedule -Name web* -At 01:30 -DaysOfWeek Monday,Tuesday,Wednesday,Thursday,Friday -MaxDuration 02:00:00 -KeepDaily 14'; Remarks = 'Named checkpoint-web-any; a run still going at 03:30 stops and says which VMs it left.' }
        @{ Title = 'Watch the VMs every minute'; Code = 'Register-VmCheckpointSchedule -Watch -Interval 00:01:00 -ScheduleName watch-all -Repository /mnt/backup/repo'; Remarks = 'Crashed VMs come back from their latest checkpoint.' }
    )
}
