# Hyper-V, tested against a STAND-IN: Hyper-V cannot run on Linux, so these tests import tests/HyperVStandIn, a
# stand-in of the Hyper-V module's commands and of the CIM calls on root\virtualization\v2 that follows their
# documented behaviour on real VHDX files (see the head of Hyper-V.psm1 for what it does and does not do).
# What is real: VmCheckpoint's provider logic, its runspace adapter, the VHDX files and their .avhdx children,
# the repository, the catalog, and qemu-img as the judge of every restored disk.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    # -Global: the cmdlets run Hyper-V's commands in this runspace, where the stand-in must be found.
    Import-Module (Join-Path $PSScriptRoot '../HyperVStandIn/Hyper-V') -Force -Global
    $script:work = New-TestFolder
    $env:HYPERV_STANDIN_ROOT = Join-Path $work 'hyperv'
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null

    # A running Hyper-V VM on a dynamic VHDX made by qemu-img, with data in its first and last MiB.
    function script:New-HvVm([string] $Name, [string] $Version = '9.0', [string] $ComputerName) {
        $folder = Join-Path $work $Name
        New-Item -ItemType Directory -Path $folder | Out-Null
        $disk = Join-Path $folder "$Name-os.vhdx"
        & qemu-img create -q -f vhdx -o subformat=dynamic,block_size=1M $disk 64M; if ($LASTEXITCODE) { throw "qemu-img create $disk failed" }
        $p = @{}; if ($ComputerName) { $p.ComputerName = $ComputerName }
        New-VM -Name $Name -VHDPath $disk -Path $folder -Version $Version @p | Out-Null
        Start-VM -Name $Name @p
        Write-StandInGuestData -VMName $Name -Offset 0 -Seed 1 @p
        Write-StandInGuestData -VMName $Name -Offset 63MB -Seed 2 @p
        [pscustomobject]@{ Name = $Name; Disk = $disk; Folder = $folder }
    }
    # The guest's disk as it is now (no checkpoint open: the .vhdx holds everything), as a raw reference copy.
    function script:Copy-HvDisk([string] $Path, [string] $To) { & qemu-img convert -O raw $Path $To; if ($LASTEXITCODE) { throw "qemu-img convert $Path failed" }; $To }
}
AfterAll {
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Module Hyper-V -ErrorAction SilentlyContinue
}

Describe 'Hyper-V checkpoints with Resilient Change Tracking (stand-in)' {
    BeforeAll {
        $script:vm = New-HvVm 'hv-rct'
        $script:c1 = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $script:ref1 = Copy-HvDisk $vm.Disk (Join-Path $work 'rct-ref1.raw')
        Write-StandInGuestData -VMName $vm.Name -Offset 10MB -Seed 3
        Write-StandInGuestData -VMName $vm.Name -Offset 40MB -Length 512KB -Seed 4
        $script:c2 = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $script:ref2 = Copy-HvDisk $vm.Disk (Join-Path $work 'rct-ref2.raw')
    }

    It 'takes a first checkpoint of the present blocks, named for the VM and its disk' {
        $c1.Hypervisor | Should -Be 'HyperV'
        $c1.Disks.Name | Should -Be 'hv-rct-os'
        $c1.ReadBytes | Should -Be 2MB
        (Get-VM -Name $vm.Name).LastConsistencyLevel | Should -Be 1     # application-consistent, as a production checkpoint
    }

    It 'reads only the ranges GetVirtualDiskChanges reports for the second' {
        $c2.ParentId | Should -Be $c1.Id
        $c2.ReadBytes | Should -Be 2MB          # the 1 MiB and the 512 KiB written, in whole 1 MiB blocks
        $c2.StoredBytes | Should -BeGreaterThan 0
        $c2.StoredBytes | Should -BeLessOrEqual 2.1MB
    }

    It 'restores each checkpoint as VHDX and as qcow2, equal to the disk at that instant' {
        foreach ($case in @(@{ C = $c1; Ref = $ref1 }, @{ C = $c2; Ref = $ref2 })) {
            foreach ($format in 'vhdx', 'qcow2') {
                $dest = Join-Path $work "restore-$($case.C.Id)-$format"
                $out = Restore-VmCheckpoint -Name $vm.Name -Id $case.C.Id -Destination $dest -DiskFormat $format -Repository $repo
                Test-SameImage -Expected $case.Ref -Actual $out.Path | Should -BeTrue
                Test-ImageChecks $out.Path | Should -BeTrue
            }
        }
    }

    It 'leaves the VM on its .vhdx with one reference point and no checkpoint or .avhdx behind' {
        @(Get-VMSnapshot -VMName $vm.Name).Count + @(Get-VMSnapshot -VMName $vm.Name -SnapshotType Recovery).Count | Should -Be 0
        (Get-VMHardDiskDrive -VMName $vm.Name).Path | Should -Be $vm.Disk
        @(Get-ChildItem $vm.Folder -Filter *.avhdx).Count | Should -Be 0
        $id = (Get-VM -Name $vm.Name).Id
        @(Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'").Count | Should -Be 1
    }

    It 'stores the checkpoint''s configuration (.vmcx) with it' {
        $dest = Join-Path $work 'rct-register'
        $r = Restore-VmCheckpoint -Name $vm.Name -Id $c2.Id -Destination $dest -NewName 'hv-rct-copy' -Repository $repo
        $r.Registered | Should -BeTrue
        $copy = Get-VM -Name 'hv-rct-copy'
        $copy.Id | Should -Not -Be (Get-VM -Name $vm.Name).Id
        $copy.State | Should -Be 'Off'
        Test-SameImage -Expected $ref2 -Actual (Get-VMHardDiskDrive -VMName 'hv-rct-copy').Path | Should -BeTrue
        Test-Path (Join-Path $dest 'Virtual Machines') | Should -BeTrue
    }

    It 'heals when the reference point is gone: reads the present blocks, stores only what changed' {
        $id = (Get-VM -Name $vm.Name).Id
        foreach ($p in Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'") {
            $svc = Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePointService
            Invoke-CimMethod -InputObject $svc -MethodName DestroyReferencePoint -Arguments @{ AffectedReferencePoint = $p } | Out-Null
        }
        Write-StandInGuestData -VMName $vm.Name -Offset 20MB -Seed 5
        $c3 = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $c3.Note | Should -Match 'Reference point .* is gone'
        $c3.ReadBytes | Should -Be 5MB           # every present block: 0, 10, 20, 40 and 63 MiB
        $c3.StoredBytes | Should -BeLessOrEqual 1.1MB
        $ref3 = Copy-HvDisk $vm.Disk (Join-Path $work 'rct-ref3.raw')
        $out = Restore-VmCheckpoint -Name $vm.Name -Id $c3.Id -Destination (Join-Path $work 'heal') -DiskFormat raw -Repository $repo
        Test-SameImage -Expected $ref3 -Actual $out.Path | Should -BeTrue
    }
}

Describe 'Hyper-V change tracking across a checkpoint with memory (stand-in)' {
    It 'keeps the last reference point through a checkpoint with memory, so the next one is still incremental' {
        $vm = New-HvVm 'hv-carry'
        $id = (Get-VM -Name $vm.Name).Id
        $points = { @(Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'") }
        Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo | Out-Null
        Write-StandInGuestData -VMName $vm.Name -Offset 30MB -Seed 51
        $withMemory = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -IncludeMemory -Repository $repo
        $withMemory.IncludesMemory | Should -BeTrue
        (& $points).Count | Should -Be 1
        Write-StandInGuestData -VMName $vm.Name -Offset 50MB -Seed 52
        $next = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $next.ReadBytes | Should -Be 2MB        # changes since the first checkpoint's reference point: a superset, never less
        (& $points).Count | Should -Be 1        # the carried point was replaced, not leaked
        $ref = Copy-HvDisk $vm.Disk (Join-Path $work 'carry-ref.raw')
        $out = Restore-VmCheckpoint -Name $vm.Name -Id $next.Id -Destination (Join-Path $work 'carry') -DiskFormat raw -Repository $repo
        Test-SameImage -Expected $ref -Actual $out.Path | Should -BeTrue
        # -Full reads everything and still replaces the reference point
        $full = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Full -Repository $repo
        $full.ReadBytes | Should -Be 4MB
        (& $points).Count | Should -Be 1
    }

    It 'removes the VM''s reference points with Disable-VmChangeTracking, and the next checkpoint still works' {
        $id = (Get-VM -Name $vm.Name).Id
        $points = { @(Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'") }
        (& $points).Count | Should -BeGreaterThan 0
        Disable-VmChangeTracking -Hypervisor HyperV -Name $vm.Name -WhatIf
        (& $points).Count | Should -BeGreaterThan 0
        $r = Disable-VmChangeTracking -Hypervisor HyperV -Name $vm.Name -Confirm:$false
        $r.Items | Should -Match '^Hyper-V reference point '
        (& $points).Count | Should -Be 0
        $c = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $c.Note | Should -Not -BeNullOrEmpty   # says why every present block was read
        (& $points).Count | Should -Be 1
    }
}

Describe 'Hyper-V change tracking that fails (stand-in)' {
    It 'reads the present blocks when GetVirtualDiskChanges fails, stores only what changed, and says why' {
        $vm = New-HvVm 'hv-rctfail'
        Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo | Out-Null
        Write-StandInGuestData -VMName $vm.Name -Offset 12MB -Seed 41
        Set-StandInVMState -VMName $vm.Name -FailChangeTracking $true
        try { $c = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo }
        finally { Set-StandInVMState -VMName $vm.Name -FailChangeTracking $false }
        $c.Note | Should -Match 'GetVirtualDiskChanges of disk hv-rctfail-os failed'
        $c.ReadBytes | Should -Be 3MB
        $c.StoredBytes | Should -BeLessOrEqual 1.1MB
        $ref = Copy-HvDisk $vm.Disk (Join-Path $work 'rctfail-ref.raw')
        $out = Restore-VmCheckpoint -Name $vm.Name -Id $c.Id -Destination (Join-Path $work 'rctfail') -DiskFormat raw -Repository $repo
        Test-SameImage -Expected $ref -Actual $out.Path | Should -BeTrue
        # and the next run is incremental again, from the reference point this one left
        Write-StandInGuestData -VMName $vm.Name -Offset 20MB -Seed 42
        (Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo).ReadBytes | Should -Be 1MB
    }
}

Describe 'Hyper-V checkpoints with memory, and restores on another host (stand-in)' {
    It 'takes a standard checkpoint with memory and resumes it on a second host with the memory of that instant' {
        $vm = New-HvVm 'hv-mem'
        $counter = (Get-VM -Name $vm.Name).MemoryCounter
        $c = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -IncludeMemory -Repository $repo
        $c.IncludesMemory | Should -BeTrue
        $c.PauseSeconds | Should -BeGreaterThan 0
        $ref = Copy-HvDisk $vm.Disk (Join-Path $work 'mem-ref.raw')
        Write-StandInGuestData -VMName $vm.Name -Offset 5MB -Seed 9      # after the checkpoint: not in the restore

        $dest = Join-Path $work 'mem-host2'
        $r = Restore-VmCheckpoint -Name $vm.Name -Id $c.Id -Destination $dest -ComputerName 'host2' -ResumeMemory -Repository $repo
        $r.ResumedFromMemory | Should -BeTrue
        $there = Get-VM -Name $vm.Name -ComputerName 'host2'
        $there.State | Should -Be 'Running'
        $there.ResumedFromSavedState | Should -BeTrue
        $there.BootCount | Should -Be 0
        $there.MemoryCounter | Should -Be $counter
        Test-SameImage -Expected $ref -Actual (Get-VMHardDiskDrive -VMName $vm.Name -ComputerName 'host2').Path | Should -BeTrue
        @(Get-VMSnapshot -VMName $vm.Name).Count | Should -Be 0
    }

    It 'refuses to replace a VM of the same name without -Force, and replaces it with -Force' {
        $c = Get-VmCheckpoint -Name 'hv-mem' -Repository $repo | Select-Object -First 1
        $dest = Join-Path $work 'mem-host2-again'
        { Restore-VmCheckpoint -Name 'hv-mem' -Id $c.Id -Destination $dest -ComputerName 'host2' -Register -Repository $repo -ErrorAction Stop } |
            Should -Throw -ErrorId 'Restore.TargetExists*'
        @(Get-VM -Name 'hv-mem' -ComputerName 'host2').Count | Should -Be 1
        $r = Restore-VmCheckpoint -Name 'hv-mem' -Id $c.Id -Destination $dest -ComputerName 'host2' -Register -Force -Repository $repo
        $r.Registered | Should -BeTrue
        (Get-VM -Name 'hv-mem' -ComputerName 'host2').State | Should -Be 'Off'
    }
}

Describe 'Hyper-V VMs without RCT, and leftovers of an interrupted run (stand-in)' {
    It 'checkpoints a configuration version 5.0 VM by production checkpoints and hash differencing' {
        $vm = New-HvVm 'hv-old' -Version '5.0'
        $c1 = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        Write-StandInGuestData -VMName $vm.Name -Offset 30MB -Seed 11
        $c2 = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $c2.Note | Should -Match 'configuration version 5.0'
        $c2.ReadBytes | Should -Be 3MB
        $c2.StoredBytes | Should -BeLessOrEqual 1.1MB
        $ref = Copy-HvDisk $vm.Disk (Join-Path $work 'old-ref.raw')
        $out = Restore-VmCheckpoint -Name $vm.Name -Id $c2.Id -Destination (Join-Path $work 'old') -DiskFormat vhdx -Repository $repo
        Test-SameImage -Expected $ref -Actual $out.Path | Should -BeTrue
        @(Get-ChildItem $vm.Folder -Filter *.avhdx).Count | Should -Be 0
    }

    It 'merges a checkpoint an interrupted run left, and goes on' {
        $vm = New-HvVm 'hv-left'
        Checkpoint-VM -Name $vm.Name -SnapshotName 'VmCheckpoint 2026-11-30 01:02:03.000Z'
        Write-StandInGuestData -VMName $vm.Name -Offset 7MB -Seed 12     # lands in the leftover .avhdx
        $c = Invoke-VmCheckpoint -Hypervisor HyperV -Name $vm.Name -Repository $repo
        $c.Note | Should -Match 'left by an interrupted run was removed'
        $ref = Copy-HvDisk $vm.Disk (Join-Path $work 'left-ref.raw')
        $out = Restore-VmCheckpoint -Name $vm.Name -Id $c.Id -Destination (Join-Path $work 'left') -DiskFormat qcow2 -Repository $repo
        Test-SameImage -Expected $ref -Actual $out.Path | Should -BeTrue
    }
}

Describe 'Hyper-V errors leave nothing behind (stand-in)' {
    BeforeAll {
        $script:errVm = New-HvVm 'hv-err'
        $script:before = Get-RepositoryFiles $repo
        $script:jobsBefore = @(Get-VmCheckpointJob -Repository $repo).Count
    }

    It 'gives ObjectNotFound for a missing VM' {
        $e = { Invoke-VmCheckpoint -Hypervisor HyperV -Name 'no-such-vm' -Repository $repo -ErrorAction Stop } | Should -Throw -ErrorId 'Checkpoint.VmNotFound*' -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'gives a clear error when Hyper-V refuses the checkpoint, and leaves the VM as it was' {
        Set-StandInVMState -VMName $errVm.Name -RefuseCheckpoints $true
        try {
            $e = { Invoke-VmCheckpoint -Hypervisor HyperV -Name $errVm.Name -Repository $repo -ErrorAction Stop } | Should -Throw '*could not initiate a checkpoint operation*' -PassThru
            $e.CategoryInfo.Category | Should -Be 'InvalidOperation'
        }
        finally { Set-StandInVMState -VMName $errVm.Name -RefuseCheckpoints $false }
        (Get-VMHardDiskDrive -VMName $errVm.Name).Path | Should -Be $errVm.Disk
    }

    It 'gives a clear error for a locked VHDX' {
        $lock = [IO.File]::Open($errVm.Disk, 'Open', 'ReadWrite', 'None')
        try {
            { Invoke-VmCheckpoint -Hypervisor HyperV -Name $errVm.Name -Repository $repo -ErrorAction Stop } | Should -Throw '*used by another process*'
        }
        finally { $lock.Dispose() }
        (Get-VMHardDiskDrive -VMName $errVm.Name).Path | Should -Be $errVm.Disk
    }

    It 'left no checkpoint, .avhdx or repository file, and logged each failure' {
        @(Get-VMSnapshot -VMName $errVm.Name).Count + @(Get-VMSnapshot -VMName $errVm.Name -SnapshotType Recovery).Count | Should -Be 0
        @(Get-ChildItem $errVm.Folder -Filter *.avhdx).Count | Should -Be 0
        Get-RepositoryFiles $repo | Should -Be $before
        @(Get-VmCheckpoint -Name $errVm.Name -Repository $repo -ErrorAction SilentlyContinue).Count | Should -Be 0
        @(Get-VmCheckpointJob -Repository $repo -Result Failed | Where-Object VmName -in 'no-such-vm', $errVm.Name).Count | Should -BeGreaterOrEqual 3
    }
}

Describe 'Several Hyper-V hosts, and a host that needs an account (stand-in)' {
    BeforeAll {
        $script:east = New-HvVm 'hv-east' -ComputerName 'hv-east-host'
        $script:west = New-HvVm 'hv-west' -ComputerName 'hv-west-host'
        # From now on hv-west-host takes only the account 'ops' (the stand-in refuses every other caller).
        Set-Content (Join-Path $env:HYPERV_STANDIN_ROOT 'hv-west-host/account') 'ops'
        $script:ops = [pscredential]::new('ops', (ConvertTo-SecureString 'not-a-secret' -AsPlainText -Force))
    }

    It 'refuses a host that does not take the current user, saying so, and adds nothing' {
        $e = { Invoke-VmCheckpoint -Hypervisor HyperV -Name hv-west -ComputerName hv-west-host -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.Exception.Message | Should -BeLike '*permission*hv-west-host*'
        Get-VmCheckpoint -Name hv-west -Repository $repo -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'checkpoints the VMs of several hosts in one call, with -Credential for the host that needs it' {
        $c = @(Invoke-VmCheckpoint -Hypervisor HyperV -Name hv-* -ComputerName hv-east-host, hv-west-host -Credential $ops -Repository $repo)
        ($c.VmName | Sort-Object) | Should -Be @('hv-east', 'hv-west')
        ($c.Host | Sort-Object) | Should -Be @('hv-east-host', 'hv-west-host')
        # Its reference point was made through the CIM session opened with the account.
        $id = (Get-VM -Name hv-west -ComputerName hv-west-host -Credential $ops).Id
        $session = New-CimSession -ComputerName hv-west-host -Credential $ops
        @(Get-CimInstance -CimSession $session -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'").Count | Should -Be 1
    }

    It 'goes on with the other hosts when one cannot be reached' {
        $c = @(Invoke-VmCheckpoint -Hypervisor HyperV -Name hv-* -ComputerName hv-east-host, hv-west-host -Repository $repo -ErrorVariable failures -ErrorAction SilentlyContinue)
        $c.VmName | Should -Be @('hv-east')
        "$failures" | Should -BeLike '*permission*hv-west-host*'
    }

    It 'watches the VMs of several hosts in one call, acting on each where it runs' {
        Set-StandInVMState -VMName hv-east -ComputerName hv-east-host -Heartbeat LostCommunication
        Set-StandInVMState -VMName hv-west -ComputerName hv-west-host -Heartbeat LostCommunication
        $events = @(Watch-VmHealth -Hypervisor HyperV -Name hv-* -ComputerName hv-east-host, hv-west-host -Credential $ops -Once -Action Restart -Repository $repo -RestorePath (Join-Path $work 'watch-hosts') -Cooldown 0)
        $actions = @($events | Where-Object Kind -eq 'Action')
        ($actions.VmName | Sort-Object) | Should -Be @('hv-east', 'hv-west')
        ($actions.Host | Sort-Object) | Should -Be @('hv-east-host', 'hv-west-host')
        $actions.Result | Should -Be @('Succeeded', 'Succeeded')
        (Get-VM -Name hv-west -ComputerName hv-west-host -Credential $ops).Heartbeat | Should -Be 'OkApplicationsHealthy'
    }

    It 'removes the reference points of VMs on several hosts in one call' {
        $r = @(Disable-VmChangeTracking -Hypervisor HyperV -Name hv-* -ComputerName hv-east-host, hv-west-host -Credential $ops -Confirm:$false)
        ($r.Host | Sort-Object) | Should -Be @('hv-east-host', 'hv-west-host')
        $r.Removed | Should -Be @($true, $true)
        $id = (Get-VM -Name hv-west -ComputerName hv-west-host -Credential $ops).Id
        $session = New-CimSession -ComputerName hv-west-host -Credential $ops
        @(Get-CimInstance -CimSession $session -Namespace root/virtualization/v2 -ClassName Msvm_VirtualSystemReferencePoint -Filter "VirtualSystemIdentifier='$id'").Count | Should -Be 0
    }
}

Describe 'Hyper-V and libvirt VMs in one repository' {
    It 'lists Hyper-V VMs and libvirt VMs side by side' {
        $disk = New-TestImage -Path (Join-Path $work 'kvm.qcow2') -Size 16MB -Offsets 0 -Seed 21
        & chmod 666 $disk
        $kvm = 'vmckpt-hv-kvm-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
        & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') | Out-Null
        New-TestVm -Name $kvm -DiskPath $disk
        try {
            Invoke-VmCheckpoint -Name $kvm -Repository $repo | Out-Null
            $vms = Get-CheckpointedVm -Repository $repo
            ($vms | Where-Object Name -eq $kvm).Hypervisor | Should -Be 'Libvirt'
            ($vms | Where-Object Name -eq 'hv-rct').Hypervisor | Should -Be 'HyperV'
            # A libvirt VM's configuration cannot be imported on Hyper-V: a clear error, and no disk left behind.
            $dest = Join-Path $work 'kvm-on-hyperv'
            $e = { Restore-VmCheckpoint -Name $kvm -Destination $dest -Hypervisor HyperV -Register -Repository $repo -ErrorAction Stop } | Should -Throw '*not taken on Hyper-V*' -PassThru
            $e.CategoryInfo.Category | Should -Be 'NotImplemented'
            Test-Path $dest | Should -BeFalse      # refused before any disk was written
            Get-VM -Name $kvm | Should -BeNullOrEmpty
        }
        finally { Remove-TestVm -Name $kvm }
    }
}

Describe 'Watch-VmHealth on Hyper-V (stand-in)' {
    BeforeAll {
        $script:wvm = New-HvVm 'hv-watch'
        $script:wc = Invoke-VmCheckpoint -Hypervisor HyperV -Name $wvm.Name -IncludeMemory -Repository $repo
        $script:wcounter = (Get-VM -Name $wvm.Name).MemoryCounter
    }

    It 'leaves a VM an administrator turned off alone' {
        Stop-VM -Name $wvm.Name -TurnOff
        @(Watch-VmHealth -Hypervisor HyperV -Name $wvm.Name -Once -Repository $repo -RestorePath (Join-Path $work 'watch') -Cooldown 0).Count | Should -Be 0
        Start-VM -Name $wvm.Name
    }

    It 'power-cycles a running VM whose heartbeat was lost (-Action Restart)' {
        $boots = (Get-VM -Name $wvm.Name).BootCount
        Set-StandInVMState -VMName $wvm.Name -Heartbeat LostCommunication
        $events = @(Watch-VmHealth -Hypervisor HyperV -Name $wvm.Name -Once -Action Restart -Repository $repo -RestorePath (Join-Path $work 'watch') -Cooldown 0)
        ($events | Where-Object Kind -eq 'Detected').Condition | Should -Be 'Unresponsive'
        ($events | Where-Object Kind -eq 'Action').Result | Should -Be 'Succeeded'
        (Get-VM -Name $wvm.Name).BootCount | Should -Be ($boots + 1)
        (Get-VM -Name $wvm.Name).Heartbeat | Should -Be 'OkApplicationsHealthy'
    }

    It 'restores a VM whose host cannot help it on another host (-Action RestoreElsewhere)' {
        Set-StandInVMState -VMName $wvm.Name -State PausedCritical
        $events = @(Watch-VmHealth -Hypervisor HyperV -Name $wvm.Name -Once -Action RestoreElsewhere -TargetComputerName 'host3' -Repository $repo -RestorePath (Join-Path $work 'watch3') -MaxAttempts 5 -Cooldown 0)
        ($events | Where-Object Kind -eq 'Detected').Condition | Should -Be 'PausedOnError'
        ($events | Where-Object Kind -eq 'Action').Result | Should -Be 'Succeeded'
        $there = Get-VM -Name $wvm.Name -ComputerName 'host3'
        $there.State | Should -Be 'Running'
        $there.MemoryCounter | Should -Be $wcounter
        Set-StandInVMState -VMName $wvm.Name -State Running
    }

    It 'restores a VM that went OffCritical from its latest checkpoint, resumed from memory' {
        Write-StandInGuestData -VMName $wvm.Name -Offset 9MB -Seed 31     # lost with the crash
        Set-StandInVMState -VMName $wvm.Name -State OffCritical
        $events = @(Watch-VmHealth -Hypervisor HyperV -Name $wvm.Name -Once -Action RestoreLatest -Repository $repo -RestorePath (Join-Path $work 'watch') -MaxAttempts 5 -Cooldown 0)
        ($events | Where-Object Kind -eq 'Detected').Condition | Should -Be 'Crashed'
        $action = $events | Where-Object Kind -eq 'Action'
        $action.Result | Should -Be 'Succeeded'
        $action.CheckpointId | Should -Be $wc.Id
        $back = Get-VM -Name $wvm.Name
        $back.State | Should -Be 'Running'
        $back.ResumedFromSavedState | Should -BeTrue
        $back.MemoryCounter | Should -Be $wcounter
        (Get-VMHardDiskDrive -VMName $wvm.Name).Path | Should -BeLike "$(Join-Path $work 'watch')*.vhdx"
    }
}

Describe 'Scheduled checkpoints of Hyper-V VMs (stand-in)' {
    It 'registers a schedule that checkpoints a Hyper-V VM when it runs' {
        $env:VMCHECKPOINT_SCHEDULE_ROOT = Join-Path $work 'schedule-root'
        try {
            $svm = New-HvVm 'hv-sched'
            $s = Register-VmCheckpointSchedule -Hypervisor HyperV -Name $svm.Name -Interval 04:00:00 -KeepLast 2 -Scheduler Cron -ScheduleName hvs -Repository $repo
            $s.Hypervisor | Should -Be 'HyperV'
            # The timer's command imports the module and calls Invoke-VmCheckpointSchedule; here it runs in this
            # session, where the stand-in is (a child process would not have it).
            $out = @(Invoke-VmCheckpointSchedule -Name hvs)
            ($out | Where-Object { $_.PSObject.Properties['Hypervisor'] -and $_.Hypervisor -eq 'HyperV' }).VmName | Should -Be $svm.Name
            @(Get-VmCheckpoint -Name $svm.Name -Repository $repo).Count | Should -Be 1
        }
        finally {
            Unregister-VmCheckpointSchedule -Name hvs -Confirm:$false -ErrorAction SilentlyContinue
            $env:VMCHECKPOINT_SCHEDULE_ROOT = $null
        }
    }
}
