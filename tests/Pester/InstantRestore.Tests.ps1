# Restore-VmCheckpoint -Instant with the tiny self-checking guest (tests/hosts/guest): killed with kill -9, it runs again
# at once from the repository (resumed from memory: it counts on with no mismatch and no reboot), libvirt's block pull
# copies its data home while it runs, and then its disk is local only and equals the checkpoint plus what was written since.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work, $script:repo, $script:uri = Initialize-LibvirtTestBed
    $script:guest = Build-TestGuest (Join-Path $work 'guest')
    $script:name = 'inst-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
    $script:disk = Join-Path $work 'disk.qcow2'
    Invoke-Qemu qemu-img create -q -f qcow2 $disk 256M | Out-Null
    # 48 MiB of data beyond the guest's two counter sectors: what the pull has to bring home.
    $script:data = New-RandomFile -Path (Join-Path $work 'data.bin') -Length 48MB -Seed 21
    Invoke-Qemu qemu-io -f qcow2 -c "write -s $data 8M 48M" $disk | Out-Null
    & chmod 666 $disk
    $script:console = Join-Path $work 'console'
    New-TestGuestXml -Name $name -Guest $guest -Disk $disk -Console $console | Set-Content (Join-Path $work 'vm.xml')
    Invoke-Virsh define (Join-Path $work 'vm.xml') | Out-Null
    Invoke-Virsh start $name | Out-Null

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
    function script:Wait-CopyHome([int] $Seconds = 300) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while ($true) {
            $job = Get-VmCheckpointJob -Name $name | Where-Object Kind -eq InstantRestore | Select-Object -First 1
            if ($job.Result -ne 'Running') { return $job }
            if ([DateTime]::UtcNow -gt $deadline) { throw "The copy of $name did not finish within $Seconds s ($($job.BytesDone) of $($job.BytesTotal) bytes)" }
            Start-Sleep -Milliseconds 500
        }
    }
    function script:Get-ServedBy([string] $Vm) {
        @(Get-ChildItem /run/vmcheckpoint/exports -Directory -ErrorAction SilentlyContinue | ForEach-Object { Join-Path $_.FullName 'server.json' } |
            Where-Object { Test-Path $_ } | ForEach-Object { Get-Content -Raw $_ | ConvertFrom-Json } | Where-Object VmName -eq $Vm)
    }
    # The disk as raw bytes without the guest's two counter sectors, which it rewrites every step.
    function script:Get-RawCopy([string] $Image, [string] $Into) {
        & qemu-img convert -U -O raw $Image $Into
        if ($LASTEXITCODE -ne 0) { throw "qemu-img convert of $Image failed" }
        $Into
    }
}
AfterAll {
    Remove-TestVm -Name $name
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Restore-VmCheckpoint -Instant' {
    It 'runs a killed guest again at once, resumed from memory, and copies its data home in the background' {
        Wait-Count 3 120
        $cp = Invoke-VmCheckpoint -Name $name -IncludeMemory -Repository $repo
        $atCheckpoint = (Restore-VmCheckpoint -Name $name -Id $cp.Id -DiskFormat raw -Destination (Join-Path $work 'at-checkpoint') -Repository $repo).Path
        & kill -9 (Get-QemuPid $name)
        Wait-DomState $name 'crashed' | Out-Null
        $counted = Get-LastCount
        $boots = @(Get-Lines | Where-Object { $_ -like 'VMCKG BOOT*' }).Count
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $r = Restore-VmCheckpoint -Name $name -Instant -ResumeMemory -Force -Destination (Join-Path $work 'restored') -Repository $repo
        $returned = $clock.Elapsed.TotalSeconds
        $r.Instant | Should -BeTrue
        $r.ResumedFromMemory | Should -BeTrue
        # It counts again: from the checkpoint's count, as one more line after those it wrote before it was killed.
        $lines = (Get-Lines).Count
        while ((Get-Lines).Count -le $lines) { if ($clock.Elapsed.TotalSeconds -gt 30) { throw 'the guest does not count' }; Start-Sleep -Milliseconds 50 }
        Write-Host ("Instant restore: returned after {0:0.00} s, counting after {1:0.00} s" -f $returned, $clock.Elapsed.TotalSeconds)
        Wait-Count ($counted + 2) 60
        Get-Lines | Where-Object { $_ -like 'VMCKG MISMATCH*' } | Should -BeNullOrEmpty
        @(Get-Lines | Where-Object { $_ -like 'VMCKG BOOT*' }).Count | Should -Be $boots

        $job = Get-VmCheckpointJob -Name $name | Where-Object Kind -eq InstantRestore | Select-Object -First 1
        $job.CheckpointId | Should -Be $cp.Id
        $job.BytesTotal | Should -Be 256MB
        # Written since the restore, while the data may still be coming home.
        Write-VmDisk -Name $name -Offset 100MB -Length 1MB -Seed 9
        $job = Wait-CopyHome
        $job.Result | Should -Be 'Succeeded'
        $job.BytesDone | Should -Be 256MB

        $overlay = Join-Path $work 'restored/vda.qcow2'
        (& qemu-img info -U --output=json $overlay | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty
        (& virsh -c $uri dumpxml $name) -join "`n" | Should -Not -Match "protocol='nbd'"
        Get-ServedBy $name | Should -BeNullOrEmpty
        # Local only, and equal to the checkpoint plus what was written since (the guest's counter sectors aside).
        Invoke-Virsh destroy $name | Out-Null
        $expected = $atCheckpoint
        & qemu-io -f raw -c "write -s $([IO.Path]::GetTempPath())vmckpt-write-9-$(1MB).bin 100M 1M" $expected | Out-Null
        $LASTEXITCODE | Should -Be 0
        $now = Get-RawCopy $overlay (Join-Path $work 'now.raw')
        & cmp -i 1024 $expected $now
        $LASTEXITCODE | Should -Be 0
    }

    It 'finishes a copy that a crash interrupted, at the next run of the module' {
        $cp = Get-VmCheckpoint -Name $name -Repository $repo | Select-Object -First 1
        $r = Restore-VmCheckpoint -Name $name -Id $cp.Id -Instant -ResumeMemory -Force -Destination (Join-Path $work 'restored2') -Repository $repo
        # Killed at once: the pull is cut short (or, on a fast day, just done).
        & kill -9 (Get-QemuPid $name)
        Wait-DomState $name 'crashed' | Out-Null
        $job = Wait-CopyHome 120
        $job.Result | Should -Be 'Succeeded'
        $overlay = Join-Path $work 'restored2/vda.qcow2'
        (& qemu-img info -U --output=json $overlay | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty
        Get-ServedBy $name | Should -BeNullOrEmpty
        $atCheckpoint = (Restore-VmCheckpoint -Name $name -Id $cp.Id -DiskFormat raw -Destination (Join-Path $work 'at-checkpoint2') -Repository $repo).Path
        $now = Get-RawCopy $overlay (Join-Path $work 'now2.raw')
        & cmp -i 1024 $atCheckpoint $now
        $LASTEXITCODE | Should -Be 0
    }
    It 'finishes an interrupted copy from an encrypted repository in a new process given -Password, and only then' {
        $secret = 'instant restore secret'
        $password = ConvertTo-SecureString $secret -AsPlainText -Force
        $encrypted = Join-Path $work 'encrypted-repo'
        New-VmCheckpointRepository -Path $encrypted -Encrypt -Password $password | Out-Null
        Invoke-Virsh start $name | Out-Null
        Wait-Count ((Get-LastCount) + 2) 60
        $cp = Invoke-VmCheckpoint -Name $name -IncludeMemory -Repository $encrypted -Password $password
        Restore-VmCheckpoint -Name $name -Id $cp.Id -Instant -ResumeMemory -Force -Destination (Join-Path $work 'restored3') -Repository $encrypted -Password $password | Out-Null
        # The guest and its export server both killed: the copy can only finish with a new server, which needs the key.
        & kill -9 (Get-QemuPid $name)
        Wait-DomState $name 'crashed' | Out-Null
        foreach ($server in Get-ServedBy $name) { & kill -9 $server.ProcessId }
        $script = "(Get-VmCheckpointJob -Name '$name' {0} -WarningAction SilentlyContinue | Where-Object Kind -eq InstantRestore | Select-Object -First 1).Result"
        $withoutPassword = Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work 'job1.out') -Script ($script -f '')
        $withoutPassword.WaitForExit()
        Get-Content (Join-Path $work 'job1.out') | Should -Be 'Running'
        $withPassword = Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work 'job2.out') -Script ($script -f "-Password (ConvertTo-SecureString '$secret' -AsPlainText -Force)")
        $withPassword.WaitForExit()
        Get-Content (Join-Path $work 'job2.out') | Should -Be 'Succeeded'
        $overlay = Join-Path $work 'restored3/vda.qcow2'
        (& qemu-img info -U --output=json $overlay | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty
        Get-ServedBy $name | Should -BeNullOrEmpty
        $atCheckpoint = (Restore-VmCheckpoint -Name $name -Id $cp.Id -DiskFormat raw -Destination (Join-Path $work 'at-checkpoint3') -Repository $encrypted -Password $password).Path
        & cmp -i 1024 $atCheckpoint (Get-RawCopy $overlay (Join-Path $work 'now3.raw'))
        $LASTEXITCODE | Should -Be 0
    }
}
