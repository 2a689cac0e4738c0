# Scheduled checkpoints: what runs here is tested here (systemd unit files and cron files written and valid, and
# the command they hold run by hand against a real VM); the Windows path only as far as its ScheduledTasks calls
# under -WhatIf, since Task Scheduler does not exist on Linux. Files go under a test root
# ($env:VMCHECKPOINT_SCHEDULE_ROOT), not into this machine's /etc.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    & chmod 755 $work
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'root'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:uri = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh')
    $script:vm = 'vmckpt-sched-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
    $disk = New-TestImage -Path (Join-Path $work 'sched.qcow2') -Size 16MB -Offsets 0 -Seed 61
    & chmod 666 $disk
    New-TestVm -Name $vm -DiskPath $disk
    function script:Get-CronCommand([string] $File) {
        $line = Get-Content $File | Where-Object { $_ -match '^\S+ \S+ \S+ \S+ \S+ root ' }
        $line -replace '^(\S+ ){5}root ', ''
    }
}
AfterAll {
    Remove-TestVm -Name $vm
    $env:VMCHECKPOINT_SCHEDULE_ROOT = $null
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Register-VmCheckpointSchedule' {
    It 'writes a systemd service and timer that systemd-analyze accepts' {
        $s = Register-VmCheckpointSchedule -Name $vm -Interval 04:00:00 -KeepLast 3 -Scheduler Systemd -ScheduleName sd -Repository $repo
        $s.Files.Count | Should -Be 2
        $service = Get-Content -Raw $s.Files[0]
        $service | Should -Match 'Type=oneshot'
        $service | Should -Match 'Invoke-VmCheckpointSchedule -Name ''sd'''
        Get-Content -Raw $s.Files[1] | Should -Match 'OnUnitActiveSec=14400s'
        $out = & systemd-analyze verify $s.Files[1] $s.Files[0] 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "$out"
    }

    It 'writes a calendar timer with -At and -DaysOfWeek that systemd-analyze accepts, and runs missed ones at boot' {
        $s = Register-VmCheckpointSchedule -Name $vm -At 02:30 -DaysOfWeek Friday, Monday -Scheduler Systemd -ScheduleName nightly -Repository $repo
        $timer = Get-Content -Raw $s.Files[1]
        $timer | Should -Match 'OnCalendar=Mon,Fri \*-\*-\* 02:30:00'
        $timer | Should -Match 'Persistent=true'
        $timer | Should -Not -Match 'OnUnitActiveSec'
        $out = & systemd-analyze calendar 'Mon,Fri *-*-* 02:30:00' 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "$out"
        "$out" | Should -Match '(Mon|Fri) \d{4}-\d\d-\d\d 02:30:00'
        $out = & systemd-analyze verify $s.Files[1] $s.Files[0] 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "$out"
        $s.When | Should -Be 'Mon, Fri at 02:30'
    }

    It 'writes cron fields for a time of day, and a weekly Task Scheduler trigger' {
        $s = Register-VmCheckpointSchedule -Name $vm -At 23:05 -DaysOfWeek Sunday, Wednesday -Scheduler Cron -ScheduleName cron-at -Repository $repo
        Get-Content $s.Files[0] | Where-Object { $_ -match '^5 23 \* \* 0,3 root ' } | Should -Not -BeNullOrEmpty
        $verbose = Register-VmCheckpointSchedule -Name $vm -At 23:05 -DaysOfWeek Sunday, Wednesday -Scheduler TaskScheduler -ScheduleName win-at -Repository $repo -WhatIf -Verbose 4>&1
        "$verbose" | Should -Match 'New-ScheduledTaskTrigger -Weekly -DaysOfWeek Wednesday,Sunday -At ''23:05'''
        $verbose = Register-VmCheckpointSchedule -Name $vm -At 01:00 -Scheduler TaskScheduler -ScheduleName win-daily -Repository $repo -WhatIf -Verbose 4>&1
        "$verbose" | Should -Match 'New-ScheduledTaskTrigger -Daily -At ''01:00'''
        Unregister-VmCheckpointSchedule -Name cron-at -Confirm:$false
    }

    It 'refuses a schedule with neither or both of -Interval and -At, and seconds cron cannot run' {
        foreach ($bad in @(@{}, @{ Interval = '01:00:00'; At = '02:00' }, @{ DaysOfWeek = 'Monday'; Interval = '01:00:00' })) {
            $e = { Register-VmCheckpointSchedule -Name $vm -Scheduler Systemd -ScheduleName bad -Repository $repo -ErrorAction Stop @bad } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        }
        $e = { Register-VmCheckpointSchedule -Name $vm -At 02:30:15 -Scheduler Cron -ScheduleName bad -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.Exception.Message | Should -BeLike '*whole minutes*'
        Get-VmCheckpointSchedule -Name bad | Should -BeNullOrEmpty
    }

    It 'names a schedule for * readably, and refuses an existing name without -Force' {
        $s = Register-VmCheckpointSchedule -Name * -Interval 04:00:00 -Scheduler Systemd -Repository $repo
        $s.Name | Should -Be 'checkpoint-all'
        $before = Get-Content -Raw $s.Files[1]
        $e = { Register-VmCheckpointSchedule -Name * -Interval 01:00:00 -Scheduler Systemd -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceExists'
        $e.Exception.Message | Should -BeLike '*-Force*'
        Get-Content -Raw $s.Files[1] | Should -Be $before
        (Register-VmCheckpointSchedule -Name * -Interval 01:00:00 -Scheduler Systemd -Repository $repo -Force).Interval | Should -Be ([timespan]'01:00:00')
        Get-Content -Raw $s.Files[1] | Should -Match 'OnUnitActiveSec=3600s'
        Unregister-VmCheckpointSchedule -Name checkpoint-all -Confirm:$false
    }

    It 'writes a cron file whose command checkpoints the VM in cron''s bare environment, into the catalog it was registered with' {
        $s = Register-VmCheckpointSchedule -Name $vm -Interval 00:15:00 -Scheduler Cron -ScheduleName cr -Repository $repo
        $s.CatalogPath | Should -Be $env:VMCHECKPOINT_CATALOG
        $file = $s.Files[0]
        Get-Content $file | Where-Object { $_ -match '^\*/15 \* \* \* \* root ' } | Should -Not -BeNullOrEmpty
        # What cron gives a job: SHELL, PATH, HOME and LOGNAME, nothing of this shell's.
        & env -i SHELL=/bin/sh PATH=/usr/bin:/bin HOME=/root LOGNAME=root sh -c (Get-CronCommand $file)
        $LASTEXITCODE | Should -Be 0
        (Get-VmCheckpointJob -Name $vm -Last 1).Result | Should -Be 'Succeeded'
        (Get-VmCheckpoint -Name $vm -Repository $repo).Count | Should -Be 1
        (Get-VmCheckpointSchedule -Name cr).CommandLine | Should -BeLike '*Invoke-VmCheckpointSchedule*'
    }

    It 'exits non-zero with a clear message when the previous run is still going, and logs it' {
        $lockDir = Join-Path ([IO.Path]::GetTempPath()) 'vmcheckpoint-schedules'
        New-Item -ItemType Directory $lockDir -Force | Out-Null
        $held = [IO.File]::Open((Join-Path $lockDir 'cr.lock'), 'OpenOrCreate', 'ReadWrite', 'None')
        try {
            $err = & sh -c ((Get-CronCommand (Get-VmCheckpointSchedule -Name cr).Files[0]) + ' 2>&1')
            $LASTEXITCODE | Should -Not -Be 0
            "$err" | Should -BeLike '*still going*'
        }
        finally { $held.Dispose() }
        (Get-VmCheckpointJob -Result Failed -Last 1).Error | Should -BeLike "*still going*"
        (Get-VmCheckpoint -Name $vm -Repository $repo).Count | Should -Be 1
    }

    It 'leaves a failed run''s error in the job log' {
        $s = Register-VmCheckpointSchedule -Name 'no-such-vm-x' -Interval 01:00:00 -Scheduler Cron -ScheduleName broken -Repository $repo
        & sh -c ((Get-CronCommand $s.Files[0]) + ' >/dev/null 2>&1')
        $LASTEXITCODE | Should -Not -Be 0
        (Get-VmCheckpointJob -Name 'no-such-vm-x' -Last 1).Error | Should -BeLike '*no-such-vm-x*'
    }

    It 'refuses an interval cron cannot express' {
        $e = { Register-VmCheckpointSchedule -Name $vm -Interval 00:07:00 -Scheduler Cron -ScheduleName odd -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        Get-VmCheckpointSchedule -Name odd | Should -BeNullOrEmpty
    }

    It 'shows the Task Scheduler calls under -WhatIf and registers nothing' {
        $verbose = Register-VmCheckpointSchedule -Name $vm -Interval 01:00:00 -Scheduler TaskScheduler -ScheduleName win -Repository $repo -WhatIf -Verbose 4>&1
        "$verbose" | Should -Match 'New-ScheduledTaskAction -Execute'
        "$verbose" | Should -Match 'New-ScheduledTaskTrigger .*-RepetitionInterval \(New-TimeSpan -Seconds 3600\)'
        "$verbose" | Should -Match 'Register-ScheduledTask -TaskPath ''\\VmCheckpoint\\'' -TaskName ''win'''
        Get-VmCheckpointSchedule -Name win | Should -BeNullOrEmpty
    }

    It 'says what a run would do under -WhatIf and does nothing' {
        Register-VmCheckpointSchedule -Name $vm -Interval 01:00:00 -KeepLast 2 -MaxDuration 00:30:00 -Scheduler Cron -ScheduleName wi -Repository $repo | Out-Null
        $before = @(Get-VmCheckpoint -Name $vm -Repository $repo).Count
        $jobs = @(Get-VmCheckpointJob).Count
        $said = Invoke-VmCheckpointSchedule -Name wi -WhatIf -Verbose 4>&1
        "$said" | Should -BeLike "*checkpoint $vm into $repo, then keep last 2, within 00:30:00*"
        @(Get-VmCheckpoint -Name $vm -Repository $repo).Count | Should -Be $before
        @(Get-VmCheckpointJob).Count | Should -Be $jobs
        Unregister-VmCheckpointSchedule -Name wi -Confirm:$false
    }

    It 'unregisters a schedule and its files' {
        $files = (Get-VmCheckpointSchedule -Name sd).Files
        Get-VmCheckpointSchedule -Name sd | Unregister-VmCheckpointSchedule -Confirm:$false
        Get-VmCheckpointSchedule -Name sd | Should -BeNullOrEmpty
        $files | ForEach-Object { Test-Path $_ | Should -BeFalse }
    }
}
