# Watch-VmHealth and a guest that stopped answering, on a tiny real guest (tests/hosts/guest: a Debian cloud kernel
# and a busybox /init) that answers the QEMU guest agent protocol and counts against its own disk, reporting on its
# serial console: "VMCKG BOOT" once per boot, "VMCKG COUNT n" per step, "VMCKG MISMATCH" when its memory and its
# disk disagree. Its agent is told to hang with the made-up agent command vmckpt-hang (the guest runs on).
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    & chmod 755 $work   # libvirt-qemu reads the kernel, initrd and disks from here
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:uri = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh')
    $script:guest = Build-TestGuest (Join-Path $work 'guest')
    $script:prefix = 'vmckpt-agent-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '-'
    $script:vms = [System.Collections.Generic.List[string]]::new()

    # Defines and starts the guest with its own disk and console file; returns its name, disk and console.
    function script:New-GuestVm([string] $Suffix) {
        $name = $prefix + $Suffix
        $disk = Join-Path $work "$Suffix.qcow2"
        Invoke-Qemu qemu-img create -q -f qcow2 $disk 16M | Out-Null
        & chmod 666 $disk
        $console = Join-Path $work "$Suffix.console"
        $xml = New-TestGuestXml -Name $name -Guest $guest -Disk $disk -Console $console
        $file = Join-Path $work "$Suffix.xml"
        Set-Content $file $xml
        Invoke-Virsh define $file | Out-Null
        $vms.Add($name)
        Invoke-Virsh start $name | Out-Null
        [pscustomobject]@{ Name = $name; Disk = $disk; Console = $console }
    }

    # The guest's own lines on its console (kernel messages and CRs left out).
    function script:Get-GuestLines([string] $Console) {
        if (-not (Test-Path $Console)) { return @() }
        @(Get-Content $Console | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -like 'VMCKG *' })
    }

    # True when the guest agent answers guest-ping through libvirt.
    function script:Test-GuestAgent([string] $Name) {
        $out = & virsh -c $uri qemu-agent-command $Name '{"execute":"guest-ping"}' --timeout 2 2>&1
        $LASTEXITCODE -eq 0 -and "$out" -match '"return"'
    }

    # Waits (bounded) until the agent answers; returns the seconds it took.
    function script:Wait-GuestAgent([string] $Name, [string] $Console, [int] $Seconds = 60) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while (-not (Test-GuestAgent $Name)) {
            if ($clock.Elapsed.TotalSeconds -gt $Seconds) {
                throw "The guest agent of $Name did not answer within $Seconds s; console: $((Get-GuestLines $Console) -join ' | ')"
            }
            Start-Sleep -Milliseconds 200
        }
        $clock.Elapsed.TotalSeconds
    }

    # Waits (bounded) until the console holds a line matching a pattern at least $Count times.
    function script:Wait-GuestLine([string] $Console, [string] $Pattern, [int] $Count = 1, [int] $Seconds = 60) {
        $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
        while (@(Get-GuestLines $Console | Where-Object { $_ -match $Pattern }).Count -lt $Count) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "No '$Pattern' (x$Count) on the console within $Seconds s: $((Get-GuestLines $Console | Select-Object -Last 5) -join ' | ')" }
            Start-Sleep -Milliseconds 200
        }
    }

    function script:Get-LastCount([string] $Console) {
        $last = Get-GuestLines $Console | Where-Object { $_ -match '^VMCKG COUNT \d+$' } | Select-Object -Last 1
        if ($last) { [long]($last -split ' ')[-1] } else { 0 }
    }
}
AfterAll {
    foreach ($vm in $vms) { Remove-TestVm -Name $vm }
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Watch-VmHealth and the guest agent' {
    It 'power-cycles a running VM whose guest agent stopped answering, and leaves it alone while it answers' {
        $vm = New-GuestVm 'hang'
        $seconds = Wait-GuestAgent $vm.Name $vm.Console
        Write-Host "The guest agent answered $([Math]::Round($seconds, 1)) s after virsh start."
        Wait-GuestLine $vm.Console '^VMCKG COUNT '

        # Answering: nothing to report.
        Watch-VmHealth -Name $vm.Name -Once -Action Restart -Repository $repo | Should -BeNullOrEmpty

        $out = Invoke-Virsh qemu-agent-command $vm.Name '{"execute":"vmckpt-hang"}'
        "$out" | Should -Match '"return"'
        Wait-GuestLine $vm.Console '^VMCKG AGENT hung$'
        # The guest itself runs on: only its agent is silent.
        $before = Get-LastCount $vm.Console
        Wait-GuestLine $vm.Console "^VMCKG COUNT $($before + 2)$"
        Get-DomState $vm.Name | Should -Match '^running'
        Test-GuestAgent $vm.Name | Should -BeFalse

        $events = @(Watch-VmHealth -Name $vm.Name -Once -Action Restart -Repository $repo)
        $detected = $events | Where-Object Kind -eq Detected
        $detected.Condition | Should -Be 'Unresponsive'
        $detected.Message | Should -Match 'agent'
        Write-Host "Detected: $($detected.Message)"
        $action = $events | Where-Object Kind -eq Action
        $action.Action | Should -Be 'Restart'
        $action.Result | Should -Be 'Succeeded' -Because $action.Message

        # A fresh boot, not the old guest carrying on: a second boot line, and an agent that answers again.
        Wait-GuestLine $vm.Console '^VMCKG BOOT ' -Count 2
        Get-DomState $vm.Name | Should -Match '^running'
        Wait-GuestAgent $vm.Name $vm.Console | Out-Null
        Watch-VmHealth -Name $vm.Name -Once -Action Restart -Repository $repo | Should -BeNullOrEmpty
        Get-GuestLines $vm.Console | Where-Object { $_ -like 'VMCKG MISMATCH*' } | Should -BeNullOrEmpty
        (Get-VmHealthEvent -Name $vm.Name -Kind Action).Condition | Should -Be 'Unresponsive'
    }
}

Describe 'Watch-VmHealth and a VM its administrator shut down' {
    It 'leaves a VM shut down with virsh shutdown alone, whatever the action' {
        $vm = New-GuestVm 'shutdown'
        Wait-GuestAgent $vm.Name $vm.Console | Out-Null
        Invoke-Virsh shutdown $vm.Name --mode agent | Out-Null
        Wait-DomState $vm.Name 'shut off \(shutdown\)' | Should -Match 'shutdown'
        Wait-GuestLine $vm.Console '^VMCKG AGENT shutdown$'
        foreach ($action in 'Restart', 'RestoreLatest') {
            Watch-VmHealth -Name $vm.Name -Once -Action $action -Repository $repo | Should -BeNullOrEmpty
        }
        Get-DomState $vm.Name | Should -Match 'shut off \(shutdown\)'
        Get-VmHealthEvent -Name $vm.Name | Should -BeNullOrEmpty
    }
}

Describe 'A VM that was shut down cleanly, checkpointed from its files' {
    It 'reads only what its libvirt checkpoint''s bitmap marks, restores equal, and goes on live once running again' {
        $vm = New-GuestVm 'offinc'
        Wait-GuestAgent $vm.Name $vm.Console | Out-Null
        Wait-GuestLine $vm.Console '^VMCKG COUNT '
        # 4 MiB more data, so that reading every data block (6 MiB in the end) cannot pass for reading the changes.
        Write-VmDisk -Name $vm.Name -Offset 2MB -Length 4MB -Seed 31
        $first = Invoke-VmCheckpoint -Name $vm.Name -Repository $repo
        $first.ReadBytes | Should -Be 5MB
        Invoke-Virsh shutdown $vm.Name --mode agent | Out-Null
        Wait-DomState $vm.Name 'shut off \(shutdown\)' | Out-Null
        # qemu saved the checkpoint's bitmap at the clean stop; qemu-io's write lands in it, as any qemu program's would.
        & qemu-io -f qcow2 -c 'write -P 0x5a 8M 1M' $vm.Disk | Out-Null; $LASTEXITCODE | Should -Be 0
        $copy = Join-Path $work 'offinc-now.qcow2'
        & qemu-img convert -O qcow2 $vm.Disk $copy; $LASTEXITCODE | Should -Be 0

        $off = Invoke-VmCheckpoint -Name $vm.Name -Repository $repo
        $off.ParentId | Should -Be $first.Id
        $off.Note | Should -Not -Match 'every data block'
        $off.ReadBytes | Should -BeGreaterOrEqual 1MB
        $off.ReadBytes | Should -BeLessOrEqual 2MB      # the block written here, and the guest's own counter block
        $out = Join-Path $work 'offinc-restore'
        $off | Restore-VmCheckpoint -Destination $out -Repository $repo | Out-Null
        Test-SameImage (Join-Path $out 'vda.qcow2') $copy | Should -BeTrue

        # The bitmap is not used for a second checkpoint (a file put back from a copy taken in between would pass for
        # unchanged): the next live run reads everything and compares by hash, and leaves one checkpoint of ours.
        Invoke-Virsh start $vm.Name | Out-Null
        Wait-GuestAgent $vm.Name $vm.Console | Out-Null
        $live = Invoke-VmCheckpoint -Name $vm.Name -Repository $repo
        $live.ReadBytes | Should -Be 6MB
        $live.StoredBytes | Should -BeLessOrEqual 1MB
        @(Invoke-Virsh checkpoint-list $vm.Name --name | Where-Object { "$_".Trim() }).Count | Should -Be 1
        Write-VmDisk -Name $vm.Name -Offset 12MB -Length 64KB -Seed 32
        (Invoke-VmCheckpoint -Name $vm.Name -Repository $repo).ReadBytes | Should -BeLessOrEqual 2MB
    }
}

Describe 'A checkpoint with memory of a guest that is writing its disk' {
    It 'resumes a copy beside the original and the restored guest counting on from the checkpoint, with disks of the same instant and no reboot' {
        $vm = New-GuestVm 'count'
        Wait-GuestLine $vm.Console '^VMCKG COUNT 5$'
        # The instant of the checkpoint lies between these two counts.
        $before = Get-LastCount $vm.Console
        $c = Invoke-VmCheckpoint -Name $vm.Name -IncludeMemory -Repository $repo
        $after = Get-LastCount $vm.Console
        $c.IncludesMemory | Should -BeTrue
        # The original counts on well past the checkpoint, so a restored disk from later than the memory would show.
        Wait-GuestLine $vm.Console "^VMCKG COUNT $($after + 10)$"
        Get-GuestLines $vm.Console | Where-Object { $_ -like 'VMCKG MISMATCH*' } | Should -BeNullOrEmpty
        # A copy under a new name resumes beside the running original: its own name, UUID, disk and serial log.
        $copy = $prefix + 'count-copy'
        $copyFolder = Join-Path $work 'copy'
        $rc = Restore-VmCheckpoint -Name $vm.Name -Id $c.Id -Destination $copyFolder -NewName $copy -ResumeMemory -Repository $repo
        $vms.Add($copy)
        $rc.ResumedFromMemory | Should -BeTrue
        Get-DomState $copy | Should -Match '^running'
        Get-DomState $vm.Name | Should -Match '^running'
        (& virsh -c $uri domuuid $copy) | Should -Not -Be (& virsh -c $uri domuuid $vm.Name)
        $copyConsole = Join-Path $copyFolder ("$copy-" + (Split-Path $vm.Console -Leaf))
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while (@(Get-GuestLines $copyConsole | Where-Object { $_ -match '^VMCKG COUNT ' }).Count -lt 5) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "The copy did not count 5 steps in its own console within 60 s: $((Get-GuestLines $copyConsole) -join ' | ')" }
            Start-Sleep -Milliseconds 200
        }
        $copyLines = @(Get-GuestLines $copyConsole)
        $copyLines | Where-Object { $_ -like 'VMCKG MISMATCH*' -or $_ -like 'VMCKG BOOT*' } | Should -BeNullOrEmpty
        [long](($copyLines | Where-Object { $_ -match '^VMCKG COUNT ' } | Select-Object -First 1) -split ' ')[-1] | Should -BeLessOrEqual ($after + 2)
        (& virsh -c $uri domblklist $copy) | Out-String | Should -Match ([regex]::Escape($copyFolder))
        Invoke-Virsh destroy $copy | Out-Null

        # Rolled back in place: the original is stopped and replaced by the checkpoint, resumed from memory.
        Invoke-Virsh destroy $vm.Name | Out-Null
        $original = Get-LastCount $vm.Console
        $seen = (Get-GuestLines $vm.Console).Count

        $r = Restore-VmCheckpoint -Name $vm.Name -Id $c.Id -Destination (Join-Path $work 'restored') -ResumeMemory -Force -Repository $repo
        $r.ResumedFromMemory | Should -BeTrue
        Get-DomState $vm.Name | Should -Match '^running'
        (& virsh -c $uri domblklist $vm.Name) | Out-String | Should -Match ([regex]::Escape((Join-Path $work 'restored')))
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while (@(Get-GuestLines $vm.Console | Select-Object -Skip $seen | Where-Object { $_ -match '^VMCKG COUNT ' }).Count -lt 10) {
            if ([DateTime]::UtcNow -gt $deadline) { throw "The restored guest did not count 10 steps within 60 s: $((Get-GuestLines $vm.Console | Select-Object -Skip $seen) -join ' | ')" }
            Start-Sleep -Milliseconds 200
        }
        $resumed = @(Get-GuestLines $vm.Console | Select-Object -Skip $seen)
        $resumed | Where-Object { $_ -like 'VMCKG MISMATCH*' } | Should -BeNullOrEmpty
        $resumed | Where-Object { $_ -like 'VMCKG BOOT*' } | Should -BeNullOrEmpty
        $first = [long](($resumed | Where-Object { $_ -match '^VMCKG COUNT ' } | Select-Object -First 1) -split ' ')[-1]
        # It carries on from the checkpoint's instant (the step in progress then, or the next), not from where the
        # original stopped.
        $first | Should -BeGreaterOrEqual $before
        $first | Should -BeLessOrEqual ($after + 2)
        Write-Host "Checkpoint between counts $before and $after, original stopped at $original, the restored guest went on at $first."
    }
}
