# Test-VmCheckpoint -Boot with the tiny self-checking guest (tests/hosts/guest): a checkpoint of the running guest is
# booted as an isolated copy (new name, no interface, its own console file, on overlays over the repository's export),
# passes when its console shows the pattern or its agent answers, fails with a reason when the pattern never comes,
# and leaves nothing behind: no domain, no overlay folder, no export server; the original runs on, its disk untouched.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work, $script:repo, $script:uri = Initialize-LibvirtTestBed
    $script:guest = Build-TestGuest (Join-Path $work 'guest')
    $script:name = 'boot-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
    $script:disk = Join-Path $work 'disk.qcow2'
    Invoke-Qemu qemu-img create -q -f qcow2 $disk 64M | Out-Null
    # Data beyond the guest's two counter sectors: nothing may ever write there.
    $script:data = New-RandomFile -Path (Join-Path $work 'data.bin') -Length 4MB -Seed 31
    Invoke-Qemu qemu-io -f qcow2 -c "write -s $data 8M 4M" $disk | Out-Null
    & chmod 666 $disk
    $script:console = Join-Path $work 'console'
    # A network interface (user-mode: no host network needed) that the copy must not get.
    (New-TestGuestXml -Name $name -Guest $guest -Disk $disk -Console $console) -replace '</devices>', "  <interface type='user'><model type='virtio'/></interface>`n  </devices>" |
        Set-Content (Join-Path $work 'vm.xml')
    Invoke-Virsh define (Join-Path $work 'vm.xml') | Out-Null
    Invoke-Virsh start $name | Out-Null
    $script:bootRoot = '/var/tmp/vmcheckpoint-boottest'

    function script:Get-Lines { if (Test-Path $console) { @(Get-Content $console | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -match '^VMCKG ' }) } else { @() } }
    function script:Get-LastCount {
        $last = Get-Lines | Where-Object { $_ -match '^VMCKG COUNT \d+$' } | Select-Object -Last 1
        if ($last) { [long]($last -split ' ')[-1] } else { 0 }
    }
    function script:Wait-Count([long] $Count, [int] $Seconds) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while ((Get-LastCount) -lt $Count) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "No count $Count within $Seconds s: $((Get-Lines | Select-Object -Last 3) -join ' | ')" }
            Start-Sleep -Milliseconds 100
        }
    }
    # What a boot test may leave behind: copies on the host, overlay folders, export servers of the VM.
    function script:Get-Leftovers {
        @(& virsh -c $uri list --all --name | Where-Object { $_ -like "$name-boottest-*" }) +
        @(Get-ChildItem $bootRoot -Directory -ErrorAction SilentlyContinue | ForEach-Object FullName) +
        @(Get-ChildItem /run/vmcheckpoint/exports -Directory -ErrorAction SilentlyContinue | ForEach-Object { Join-Path $_.FullName 'server.json' } |
            Where-Object { Test-Path $_ } | ForEach-Object { Get-Content -Raw $_ | ConvertFrom-Json } | Where-Object VmName -eq $name | ForEach-Object { "export server $($_.ProcessId)" })
    }
    # The data region of the original's disk as it is now (the counter sectors in the first KiB aside).
    function script:Get-DataHash {
        $copy = Join-Path $work ('now-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '.qcow2')
        Copy-VmDisk -Name $name -Source $disk -Destination $copy
        $raw = "$copy.raw"
        & qemu-img convert -O raw $copy $raw
        $stream = [IO.File]::OpenRead($raw)
        try { $stream.Position = 1024; [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($stream)) }
        finally { $stream.Dispose(); Remove-Item $copy, $raw }
    }
    # Runs $Action while a sampler keeps the live XML of the first boot-test copy it sees.
    function script:Invoke-WatchingCopy([scriptblock] $Action) {
        $stop = [System.Threading.ManualResetEventSlim]::new($false)
        $sampler = [powershell]::Create().AddScript({
            param($uri, $prefix, $stop)
            while (-not $stop.IsSet) {
                $copy = & virsh -c $uri list --name | Where-Object { $_ -like "$prefix*" } | Select-Object -First 1
                if ($copy) {
                    $xml = (& virsh -c $uri dumpxml $copy 2>$null) -join "`n"
                    if ($xml) { return [pscustomobject]@{ Name = $copy; Xml = $xml; Persistent = "$(& virsh -c $uri dominfo $copy)" -match 'Persistent:\s+yes' } }
                }
                Start-Sleep -Milliseconds 200
            }
        }).AddArgument($uri).AddArgument("$name-boottest-").AddArgument($stop)
        $running = $sampler.BeginInvoke()
        try { $result = & $Action }
        finally { $stop.Set(); $seen = @($sampler.EndInvoke($running)) | Select-Object -First 1; $sampler.Dispose() }
        [pscustomobject]@{ Result = $result; Copy = $seen }
    }
}
AfterAll {
    Remove-TestVm -Name $name
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Test-VmCheckpoint -Boot' {
    BeforeAll {
        Wait-Count 3 120
        $script:cp = Invoke-VmCheckpoint -Name $name -Repository $repo
        $script:before = Get-DataHash
        $script:boots = @(Get-Lines | Where-Object { $_ -like 'VMCKG BOOT*' }).Count
    }

    It 'passes when the copy''s serial console shows the pattern, isolated from the original and its network' {
        $counted = Get-LastCount
        $watched = Invoke-WatchingCopy { Test-VmCheckpoint -Name $name -Id $cp.Id -Boot -ConsolePattern '^VMCKG BOOT' -BootTimeout 00:02:00 -Repository $repo }
        $r = $watched.Result
        $r.Status | Should -Be 'Healthy'
        $r.Boot | Should -Be 'Passed'
        $r.BootReason | Should -Match "showed 'VMCKG BOOT"
        # The copy as it ran: its own name, no interface, its disk an overlay in its folder over the export, its console there too.
        $watched.Copy | Should -Not -BeNullOrEmpty
        $watched.Copy.Name | Should -Match "^$name-boottest-[0-9a-f]{8}$"
        $watched.Copy.Persistent | Should -BeFalse
        $xml = [xml]$watched.Copy.Xml
        @($xml.domain.devices.SelectNodes('interface')).Count | Should -Be 0
        $xml.domain.devices.disk.source.file | Should -BeLike "$bootRoot/*-boottest-*/vda.qcow2"
        $xml.domain.devices.disk.backingStore.source.protocol | Should -Be 'nbd'
        $xml.domain.devices.serial.source.path | Should -BeLike "$bootRoot/*-boottest-*/console.log"
        $watched.Copy.Xml | Should -Not -Match ([regex]::Escape($disk))
        $watched.Copy.Xml | Should -Not -Match ([regex]::Escape($console))

        Get-Leftovers | Should -BeNullOrEmpty
        # The original ran on the whole time: no second boot, no mismatch, still counting.
        Get-DomState $name | Should -Match '^running'
        Wait-Count ($counted + 2) 60
        @(Get-Lines | Where-Object { $_ -like 'VMCKG BOOT*' }).Count | Should -Be $boots
        Get-Lines | Where-Object { $_ -like 'VMCKG MISMATCH*' } | Should -BeNullOrEmpty
        # Recorded on the checkpoint and in the job log.
        $info = Get-VmCheckpoint -Name $name -Id $cp.Id -Repository $repo
        $info.BootResult | Should -Be 'Passed'
        $info.BootReason | Should -Be $r.BootReason
        $info.BootTime | Should -Not -BeNullOrEmpty
        $job = Get-VmCheckpointJob -Name $name | Where-Object Kind -eq BootTest | Select-Object -First 1
        $job.Result | Should -Be 'Succeeded'
        $job.CheckpointId | Should -Be $cp.Id
    }

    It 'passes on the guest agent''s answer when no pattern is given' {
        $r = Test-VmCheckpoint -Name $name -Id $cp.Id -Boot -BootTimeout 00:02:00 -Repository $repo
        $r.Boot | Should -Be 'Passed'
        $r.BootReason | Should -Match 'guest agent answered'
        Get-Leftovers | Should -BeNullOrEmpty
    }

    It 'fails with the reason when the pattern never appears within -BootTimeout, and cleans up all the same' {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $r = Test-VmCheckpoint -Name $name -Id $cp.Id -Boot -ConsolePattern 'NEVER-SHOWN-\d{9}' -BootTimeout 00:00:20 -Repository $repo -WarningVariable warned 3>$null
        $seconds = $clock.Elapsed.TotalSeconds
        Write-Host ("Failing boot test returned after {0:0.0} s" -f $seconds)
        $r.Boot | Should -Be 'Failed'
        $r.BootReason | Should -Match "did not show 'NEVER-SHOWN-\\d\{9\}' within 20 s"
        # It booted meanwhile: the reason quotes the console's last line.
        $r.BootReason | Should -Match "last line: 'VMCKG "
        $seconds | Should -BeGreaterOrEqual 20
        $seconds | Should -BeLessThan 60
        "$warned" | Should -Match 'failed its boot test'
        Get-Leftovers | Should -BeNullOrEmpty
        (Get-VmCheckpoint -Name $name -Id $cp.Id -Repository $repo).BootResult | Should -Be 'Failed'
        (Get-VmCheckpointJob -Name $name | Where-Object Kind -eq BootTest | Select-Object -First 1).Result | Should -Be 'Failed'
    }

    It 'sweeps what a killed boot test left: the next boot test removes its overlay folder and its export server' {
        $p = Start-PwshScript -WorkingDirectory $work -Script "Test-VmCheckpoint -Name '$name' -Id '$($cp.Id)' -Boot -ConsolePattern 'NEVER-SHOWN' -BootTimeout 00:05:00 -Repository '$repo' | Out-Null"
        $deadline = [DateTime]::UtcNow.AddSeconds(120)
        while (-not (& virsh -c $uri list --name | Where-Object { $_ -like "$name-boottest-*" })) {
            if ([DateTime]::UtcNow -gt $deadline -or $p.HasExited) { throw 'the boot test''s copy never ran' }
            Start-Sleep -Milliseconds 200
        }
        & kill -9 $p.Id
        $p.WaitForExit()
        # libvirt destroys the transient copy with the connection of the process that made it...
        $deadline = [DateTime]::UtcNow.AddSeconds(30)
        while (& virsh -c $uri list --all --name | Where-Object { $_ -like "$name-boottest-*" }) {
            if ([DateTime]::UtcNow -gt $deadline) { throw 'the killed boot test''s copy is still defined' }
            Start-Sleep -Milliseconds 200
        }
        # ...but its overlay folder and its export server stay behind, until the next boot test.
        $left = Get-Leftovers
        @($left | Where-Object { $_ -like "$bootRoot/*" }).Count | Should -Be 1
        @($left | Where-Object { $_ -like 'export server *' }).Count | Should -Be 1
        $r = Test-VmCheckpoint -Name $name -Id $cp.Id -Boot -ConsolePattern '^VMCKG BOOT' -BootTimeout 00:02:00 -Repository $repo
        $r.Boot | Should -Be 'Passed'
        Get-Leftovers | Should -BeNullOrEmpty
    }

    It 'refuses a VM without a guest agent channel unless -ConsolePattern is given' {
        $plain = "$name-noagent"
        $plainDisk = Join-Path $work 'noagent.qcow2'
        Invoke-Qemu qemu-img create -q -f qcow2 $plainDisk 16M | Out-Null
        New-TestVm -Name $plain -DiskPath $plainDisk
        try {
            $pcp = Invoke-VmCheckpoint -Name $plain -Repository $repo
            $r = Test-VmCheckpoint -Name $plain -Id $pcp.Id -Boot -Repository $repo -ErrorVariable failed -ErrorAction SilentlyContinue
            $r.Boot | Should -BeNullOrEmpty
            $r.BootReason | Should -Match 'no guest agent channel'
            $failed[0].FullyQualifiedErrorId | Should -BeLike 'BootTest.*'
            Get-Leftovers | Should -BeNullOrEmpty
        }
        finally { Remove-TestVm -Name $plain }
    }

    It 'boot-tests the checkpoint a scheduled run takes with -BootTest, and fails the run when the test fails' {
        $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'schedules'
        try {
            $s = Register-VmCheckpointSchedule -Name $name -Interval 04:00:00 -Scheduler Cron -ScheduleName boot-ok -BootTest -ConsolePattern '^VMCKG BOOT' -BootTimeout 00:02:00 -Repository $repo
            $s.BootTest | Should -BeTrue
            $out = Invoke-VmCheckpointSchedule -Name boot-ok
            $taken = $out | Where-Object { $_ -is [VmCheckpoint.Core.Catalog.CheckpointInfo] }
            ($out | Where-Object { $_ -is [VmCheckpoint.Core.Jobs.BootTestResult] }).Result | Should -Be 'Passed'
            (Get-VmCheckpoint -Name $name -Id $taken.Id -Repository $repo).BootResult | Should -Be 'Passed'
            Register-VmCheckpointSchedule -Name $name -Interval 04:00:00 -Scheduler Cron -ScheduleName boot-bad -BootTest -ConsolePattern 'NEVER-SHOWN' -BootTimeout 00:00:10 -Repository $repo | Out-Null
            { Invoke-VmCheckpointSchedule -Name boot-bad -ErrorAction Stop } | Should -Throw '*failed its boot test*'
            (Get-VmCheckpoint -Name $name -Repository $repo | Select-Object -First 1).BootResult | Should -Be 'Failed'
            Get-Leftovers | Should -BeNullOrEmpty
        }
        finally {
            Get-VmCheckpointSchedule -ErrorAction SilentlyContinue | Unregister-VmCheckpointSchedule -Confirm:$false -ErrorAction SilentlyContinue
            $env:VMCHECKPOINT_SCHEDULE_ROOT = $null
        }
    }

    It 'left the original''s disk as it was' {
        Get-DataHash | Should -Be $before
        Get-DomState $name | Should -Match '^running'
    }
}
