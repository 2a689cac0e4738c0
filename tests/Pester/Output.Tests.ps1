# What an admin's tools make of the module's output: CSV and JSON without .NET internals, default views for
# schedules and notification settings that fit 80 columns, and no colour codes in output that is not a terminal.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'root'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $disk = New-TestImage -Path (Join-Path $work 'sys.qcow2') -Size 64MB -Offsets 0, 8MB -Seed 3
    $script:checkpoint = Invoke-VmCheckpoint -Name outvm -DiskPath $disk -Repository $repo
    Restore-VmCheckpoint -Name outvm -Destination (Join-Path $work 'restored') -Repository $repo | Out-Null
}
AfterAll {
    $env:VMCHECKPOINT_SCHEDULE_ROOT = $null
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Output an admin exports' {
    It 'writes each checkpoint''s disks into a CSV cell as names, formats and sizes' {
        $csv = $checkpoint | ConvertTo-Csv | ConvertFrom-Csv
        $csv.Disks | Should -Be 'sys (qcow2, 64 MiB)'
        ($checkpoint | ConvertTo-Csv) -join "`n" | Should -Not -Match 'System\.Collections'
    }

    It 'gives jobs a plain string id in JSON and CSV, and the same id Get-VmCheckpointJob shows' {
        $job = Get-VmCheckpointJob -Last 1
        $job.Id | Should -BeOfType [string]
        $json = $job | ConvertTo-Json -WarningAction SilentlyContinue | ConvertFrom-Json
        $json.Id | Should -Match '^[0-9a-f]{24}$'
        $json.Id | Should -Be $job.Id
        ($job | ConvertTo-Csv | ConvertFrom-Csv).Result | Should -Be 'Succeeded'
    }

    It 'writes every kind, result, status and format as a name in JSON, never a number' {
        $restored = Restore-VmCheckpoint -Name outvm -Destination (Join-Path $work 'json') -Repository $repo
        Register-VmCheckpointSchedule -Name jsonvm -At 02:00 -DaysOfWeek Saturday, Sunday -Scheduler Cron -Repository $repo | Out-Null
        Set-VmCheckpointNotification -WebhookUri http://127.0.0.1:9/hook -On Always
        try {
            $outputs = @{
                job          = Get-VmCheckpointJob -Last 1
                verification = Test-VmCheckpoint -Repository $repo
                restore      = $restored
                schedule     = Get-VmCheckpointSchedule -Name checkpoint-jsonvm
                notification = Get-VmCheckpointNotification
            }
            foreach ($name in $outputs.Keys) {
                $json = $outputs[$name] | ConvertTo-Json -Depth 4 -WarningAction SilentlyContinue
                $json | Should -Not -Match '"(Result|Status|Kind|Format|On)":\s*\d' -Because "$name output names its enums"
            }
            ($outputs.job | ConvertTo-Json | ConvertFrom-Json).Result | Should -Be 'Succeeded'
            ($outputs.verification | ConvertTo-Json | ConvertFrom-Json).Status | Should -Be 'Healthy'
            ($outputs.restore | ConvertTo-Json -Depth 4 | ConvertFrom-Json).Format | Should -Be 'Qcow2'
            $schedule = $outputs.schedule | ConvertTo-Json -Depth 4 | ConvertFrom-Json
            $schedule.Kind | Should -Be 'Checkpoint'
            $schedule.DaysOfWeek | Should -Be @('Saturday', 'Sunday')
            ($outputs.notification | ConvertTo-Json | ConvertFrom-Json).On | Should -Be 'Always'
        } finally {
            Unregister-VmCheckpointSchedule -Name checkpoint-jsonvm -Confirm:$false
            Remove-VmCheckpointNotification -Confirm:$false
        }
    }

    It 'writes verification problems and removed ids as text in CSV' {
        (Test-VmCheckpoint -Repository $repo | ConvertTo-Csv) -join "`n" | Should -Not -Match 'System\.Collections'
        (Get-VmCheckpointSchedule | ConvertTo-Csv) -join "`n" | Should -Not -Match 'System\.Collections'
    }
}

Describe 'Default views' {
    It 'shows schedules as a table of name, kind, when and VMs within 80 columns' {
        Register-VmCheckpointSchedule -Name web*, db01 -At 01:30 -DaysOfWeek Monday -MaxDuration 02:00:00 -Scheduler Cron -Repository $repo | Out-Null
        $lines = @(Get-VmCheckpointSchedule | Out-String -Width 80 -Stream | Where-Object { $_.Trim() })
        $lines[0] | Should -Match '^Name\s+Kind\s+When\s+VmNames'
        $lines[2] | Should -Match '^checkpoint-web-any-db01\s+Checkpoint\s+Mon at 01:30 \(max 2:00\)'
        $lines[2] | Should -Match 'web\*, db01$'
        $lines | ForEach-Object { $_.Length | Should -BeLessOrEqual 80 }
    }

    It 'shows notification settings as what goes where' {
        Set-VmCheckpointNotification -SmtpServer 127.0.0.1 -Port 2525 -From a@example.com -To ops@example.com -Syslog
        $text = Get-VmCheckpointNotification | Out-String -Width 80
        $text | Should -Match 'Mail\s+: a@example\.com to ops@example\.com through 127\.0\.0\.1:2525'
        $text | Should -Match 'Syslog\s+: this host'
        $text | Should -Match 'Webhook\s+: off'
        Remove-VmCheckpointNotification -Confirm:$false
    }
}

Describe 'Output that is not a terminal' {
    It 'carries no colour codes when redirected to a file' {
        $out = Join-Path $work 'out.txt'
        $err = Join-Path $work 'err.txt'
        $p = Start-PwshScript -WorkingDirectory $work -StdOut $out -StdErr $err -Script @"
`$env:VMCHECKPOINT_CATALOG = '$env:VMCHECKPOINT_CATALOG'
Get-VmCheckpoint -Repository '$repo' | Format-List
Get-VmCheckpoint -Repository '$repo'
Get-VmCheckpoint -Name no-such-vm -Repository '$repo' -ErrorAction Continue
"@
        $p.WaitForExit()
        $text = (Get-Content -Raw $out) + (Get-Content -Raw $err)
        $text | Should -Match 'outvm'
        $text | Should -Match 'no-such-vm'
        $text | Should -Not -Match "`e\["
    }
}
