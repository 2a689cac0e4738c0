# Watch-VmHealth on real libvirt VMs: kill -9 of a VM's qemu, and the watcher brings it back from its latest
# checkpoint, resumed from its memory state; an administrator's destroy is left alone; repeated crashes stop at
# -MaxAttempts; with its host gone, the VM is restored on a second host.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work, $script:repo, $script:uri = Initialize-LibvirtTestBed
    $script:prefix = 'vmckpt-health-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '-'
    $script:vms = [System.Collections.Generic.List[string]]::new()
    $script:restored = Join-Path $work 'restored'
    function script:New-Vm([string] $Suffix, [string] $Uri = $uri) {
        $disk = New-TestImage -Path (Join-Path $work "$Suffix.qcow2") -Size 32MB -Offsets 0, 8MB -Seed ($Suffix.Length + 40)
        & chmod 666 $disk
        $name = $prefix + $Suffix
        New-TestVm -Name $name -DiskPath $disk -Uri $Uri
        $vms.Add($name)
        [pscustomobject]@{ Name = $name; Disk = $disk }
    }
    function script:Crash([string] $Name) {
        & kill -9 (Get-QemuPid $Name)
        Wait-DomState $Name 'crashed' | Out-Null
    }
}
AfterAll {
    foreach ($vm in $vms) { Remove-TestVm -Name $vm }
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Watch-VmHealth' {
    It 'restores a crashed VM from its latest checkpoint, resumed from memory, with the disk of that instant' {
        $vm = New-Vm 'crash'
        $c = Invoke-VmCheckpoint -Name $vm.Name -IncludeMemory -Repository $repo
        Copy-VmDisk -Name $vm.Name -Source $vm.Disk -Destination (Join-Path $work 'at-checkpoint.qcow2')
        Write-VmDisk -Name $vm.Name -Offset 4MB -Seed 77      # after the checkpoint: must not survive the restore
        Crash $vm.Name
        $events = Watch-VmHealth -Name $vm.Name -Once -Action RestoreLatest -RestorePath $restored -Repository $repo
        $events[0].Kind | Should -Be 'Detected'
        $events[0].Condition | Should -Be 'Crashed'
        $action = $events | Where-Object Kind -eq Action
        $action.Action | Should -Be 'RestoreLatest'
        $action.Result | Should -Be 'Succeeded'
        $action.CheckpointId | Should -Be $c.Id
        $action.Message | Should -BeLike '*resumed from its memory state*'
        $action.RecoverySeconds | Should -BeGreaterThan 0
        Write-Host "Recovery of a crashed VM took $([Math]::Round($action.RecoverySeconds, 1)) s (detection to running)."
        Get-DomState $vm.Name | Should -Match 'running \(restored\)'
        $now = ((& virsh -c $uri domblklist $vm.Name --details) | Where-Object { $_ -match 'vda' }) -split '\s+' | Select-Object -Last 1
        $now | Should -BeLike "$restored*"
        # Restored instantly (the default on libvirt): the VM runs on an overlay of the checkpoint's export while its
        # data comes home. Once it is home, a flushed copy of the disk is compared (a running qcow2 read with -U may
        # show metadata qemu has not written yet).
        $deadline = [DateTime]::UtcNow.AddMinutes(3)
        while ((Get-VmCheckpointJob -Name $vm.Name | Where-Object Kind -eq InstantRestore | Select-Object -First 1).Result -eq 'Running' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 250 }
        (Get-VmCheckpointJob -Name $vm.Name | Where-Object Kind -eq InstantRestore | Select-Object -First 1).Result | Should -Be 'Succeeded'
        Copy-VmDisk -Name $vm.Name -Source $now -Destination (Join-Path $work 'restored-now.qcow2')
        & qemu-img compare (Join-Path $work 'at-checkpoint.qcow2') (Join-Path $work 'restored-now.qcow2') | Out-Null
        $LASTEXITCODE | Should -Be 0
        (Get-VmHealthEvent -Name $vm.Name).Count | Should -Be 2
    }

    It 'by default restarts a crashed VM on its own disk, keeping what it wrote since its checkpoint, and restores only when it crashes again' {
        $vm = New-Vm 'restart-first'
        $c = Invoke-VmCheckpoint -Name $vm.Name -Repository $repo
        Write-VmDisk -Name $vm.Name -Offset 4MB -Seed 78      # after the checkpoint: a restart in place keeps it
        Copy-VmDisk -Name $vm.Name -Source $vm.Disk -Destination (Join-Path $work 'after-write.qcow2')
        Crash $vm.Name
        $events = Watch-VmHealth -Name $vm.Name -Once -Cooldown 0 -RestorePath $restored -Repository $repo
        $action = $events | Where-Object Kind -eq Action
        $action.Action | Should -Be 'Restart'
        $action.Result | Should -Be 'Succeeded'
        Get-DomState $vm.Name | Should -Match 'running'
        $now = ((& virsh -c $uri domblklist $vm.Name --details) | Where-Object { $_ -match 'vda' }) -split '\s+' | Select-Object -Last 1
        $now | Should -Be $vm.Disk
        & qemu-img compare -U (Join-Path $work 'after-write.qcow2') $vm.Disk | Out-Null
        $LASTEXITCODE | Should -Be 0 -Because 'the write made after the checkpoint is still on the disk'

        # Crashed again soon after the restart: the restart did not help, so the latest checkpoint is restored,
        # into a folder of its own; the VM's own disk file stays where it was.
        Crash $vm.Name
        $events = Watch-VmHealth -Name $vm.Name -Once -Cooldown 0 -RestorePath $restored -Repository $repo
        $action = $events | Where-Object Kind -eq Action
        $action.Action | Should -Be 'RestoreLatest'
        $action.Result | Should -Be 'Succeeded'
        $action.CheckpointId | Should -Be $c.Id
        Test-Path $vm.Disk | Should -BeTrue
    }

    It 'runs in the foreground, woken by libvirt''s lifecycle events, writing events that Export-Csv takes' {
        $vm = New-Vm 'events'
        Invoke-VmCheckpoint -Name $vm.Name -Repository $repo | Out-Null
        $csv = Join-Path $work 'health.csv'
        # A 10-minute backstop: only a lifecycle event can make it act within the test's time.
        $watcher = Start-PwshScript -CtrlC -WorkingDirectory $work -StdErr (Join-Path $work 'watcher.err') -Script @"
`$env:VMCHECKPOINT_CATALOG = '$env:VMCHECKPOINT_CATALOG'
Watch-VmHealth -Name '$($vm.Name)' -Interval 00:10:00 -Action Restart -RestorePath '$restored' -Repository '$repo' | Export-Csv -Path '$csv'
"@
        try {
            Start-Sleep -Seconds 8   # the watcher's first round is done and it is waiting
            # No waiting for "crashed" here: the watcher may have the VM running again before virsh shows it.
            & kill -9 (Get-QemuPid $vm.Name)
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while (-not (Get-VmHealthEvent -Name $vm.Name -Kind Action) -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 500 }
            $action = Get-VmHealthEvent -Name $vm.Name -Kind Action
            $action.Result | Should -Be 'Succeeded' -Because (Get-Content (Join-Path $work 'watcher.err') -Raw -ErrorAction SilentlyContinue)
            Wait-DomState $vm.Name 'running' | Should -Match 'running'
        }
        finally {
            # Ctrl+C: the watcher stops cleanly, and Export-Csv closes its file.
            & kill -INT $watcher.Id
            if (-not $watcher.WaitForExit(20000)) {
                # Where each thread of the watcher waits (its .NET name and kernel wait channel), for the report.
                $threads = Get-ChildItem "/proc/$($watcher.Id)/task" -ErrorAction SilentlyContinue | ForEach-Object {
                    '{0}:{1}' -f (Get-Content "$($_.FullName)/comm" -ErrorAction SilentlyContinue), (Get-Content "$($_.FullName)/wchan" -ErrorAction SilentlyContinue)
                }
                Stop-Process -Id $watcher.Id -Force
                throw "Ctrl+C did not stop the watcher within 20 s. Threads: $($threads -join ', '). Its errors: $(Get-Content (Join-Path $work 'watcher.err') -Raw -ErrorAction SilentlyContinue)"
            }
        }
        (Import-Csv $csv | Where-Object Kind -eq 'Action').Action | Should -Be 'Restart'
    }

    It 'leaves a deliberately destroyed VM alone' {
        $vm = New-Vm 'destroyed'
        Invoke-VmCheckpoint -Name $vm.Name -Repository $repo | Out-Null
        & virsh -c $uri destroy $vm.Name | Out-Null
        Watch-VmHealth -Name $vm.Name -Once -RestorePath $restored -Repository $repo | Should -BeNullOrEmpty
        Get-DomState $vm.Name | Should -Match 'shut off \(destroyed\)'
    }

    It 'stops at -MaxAttempts when a VM keeps crashing' {
        $vm = New-Vm 'flaky'
        $results = foreach ($i in 1..3) {
            Crash $vm.Name
            Watch-VmHealth -Name $vm.Name -Once -Action Restart -MaxAttempts 2 -Cooldown 0 -Repository $repo
        }
        ($results | Where-Object Kind -eq Action).Result | Should -Be @('Succeeded', 'Succeeded')
        ($results | Select-Object -Last 1).Kind | Should -Be 'GaveUp'
        Get-DomState $vm.Name | Should -Match 'crashed'
        # Given up, it stays quiet.
        Watch-VmHealth -Name $vm.Name -Once -Action Restart -MaxAttempts 2 -Cooldown 0 -Repository $repo | Should -BeNullOrEmpty
    }

    It 'waits out the back-off between attempts' {
        $vm = New-Vm 'backoff'
        Crash $vm.Name
        (Watch-VmHealth -Name $vm.Name -Once -Action Restart -Cooldown 01:00:00 -Repository $repo | Where-Object Kind -eq Action).Result | Should -Be 'Succeeded'
        Crash $vm.Name
        $e = Watch-VmHealth -Name $vm.Name -Once -Action Restart -Cooldown 01:00:00 -Repository $repo
        $e.Kind | Should -Be 'Waiting'
        Get-DomState $vm.Name | Should -Match 'crashed'
    }

    It 'restores the VM on a second host when its own host is gone' {
        $root = Join-Path ([IO.Path]::GetTempPath()) ('vmckpt-h2-' + [guid]::NewGuid().ToString('N').Substring(0, 6))
        $second = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') second $root
        try {
            $vm = New-Vm 'moving' -Uri $second
            Invoke-VmCheckpoint -Name $vm.Name -ConnectionUri $second -IncludeMemory -Repository $repo | Out-Null
        }
        finally {
            & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') stop $root
        }
        Start-Sleep -Milliseconds 500
        $events = Watch-VmHealth -Name $vm.Name -ConnectionUri $second -TargetConnectionUri $uri -Once -RestorePath $restored -Repository $repo
        $events[0].Condition | Should -Be 'HostUnreachable'
        $action = $events | Where-Object Kind -eq Action
        $action.Action | Should -Be 'RestoreElsewhere'
        $action.Result | Should -Be 'Succeeded'
        Get-DomState $vm.Name | Should -Match 'running'
        Remove-Item $root -Recurse -Force -ErrorAction SilentlyContinue
    }
}
