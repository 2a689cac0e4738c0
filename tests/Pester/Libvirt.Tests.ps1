# Live checkpoints of real libvirt VMs (domain type qemu, no guest OS: they sit in their BIOS, running).
# Writes go into the running VMs' disks through qemu-io on the monitor, dirtying their bitmaps as a guest's
# would. A second libvirtd, in its own mount namespace with its own state, plays a second host.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work, $script:repo, $script:uri = Initialize-LibvirtTestBed
    $script:secondRoot = Join-Path ([IO.Path]::GetTempPath()) ("vmckpt-host2-" + [guid]::NewGuid().ToString('N').Substring(0, 6))
    $script:secondUri = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') second $secondRoot
    $script:prefix = 'vmckpt-test-' + [guid]::NewGuid().ToString('N').Substring(0, 6) + '-'
    $script:vms = [System.Collections.Generic.List[string]]::new()
    function script:New-Vm([string] $Suffix, [string[]] $Disks) {
        $name = $prefix + $Suffix
        New-TestVm -Name $name -DiskPath $Disks
        $vms.Add($name)
        $name
    }
    function script:New-Disk([string] $Name, [string] $Format = 'qcow2', [long] $Size = 64MB, [long[]] $Offsets = @(0, 8MB, 40MB)) {
        $path = New-TestImage -Path (Join-Path $work $Name) -Size $Size -Format $Format -Offsets $Offsets -Seed ($Name.GetHashCode() -band 0xffff)
        & chmod 666 $path
        $path
    }
}
AfterAll {
    foreach ($vm in $vms) { Remove-TestVm -Name $vm; Remove-TestVm -Name $vm -Uri $secondUri }
    & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh') stop $secondRoot
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
    Remove-Item $secondRoot -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Invoke-VmCheckpoint of running libvirt VMs' {
    BeforeAll {
        $script:disk = New-Disk 'live.qcow2'
        $script:vm = New-Vm 'live' $disk
    }

    It 'takes a first checkpoint of a running VM, reading its allocated blocks over NBD' {
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.Hypervisor | Should -Be 'Libvirt'
        $c.Disks.Name | Should -Be 'vda'
        $c.ReadBytes | Should -Be 3MB
        Get-DomState $vm | Should -Match 'running'
        Copy-VmDisk -Name $vm -Source $disk -Destination (Join-Path $work 'live-1.qcow2')
        $script:first = $c
    }

    It 'reads and stores only the blocks written since, in the next checkpoint' {
        Write-VmDisk -Name $vm -Offset 20MB -Length 1MB -Seed 201
        Write-VmDisk -Name $vm -Offset (50MB + 64KB) -Length 64KB -Seed 202
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.ParentId | Should -Be $first.Id
        $c.ReadBytes | Should -Be 2MB
        $c.ChangedBytes | Should -Be 2MB
        $c.StoredBytes | Should -BeGreaterThan 1MB
        $c.StoredBytes | Should -BeLessOrEqual (2MB + 4KB)
        Copy-VmDisk -Name $vm -Source $disk -Destination (Join-Path $work 'live-2.qcow2')
        $script:second = $c
        # libvirt keeps one checkpoint of ours per VM: the next run's parent.
        @(& virsh -c $uri checkpoint-list $vm --name | Where-Object { $_ }).Count | Should -Be 1
    }

    It 'restores every checkpoint equal to the disk at its instant' {
        foreach ($pair in @(@($first, 'live-1.qcow2'), @($second, 'live-2.qcow2'))) {
            $r = Restore-VmCheckpoint -Name $vm -Id $pair[0].Id -Destination (Join-Path $work "r-$($pair[0].Id)") -Repository $repo
            Test-SameImage (Join-Path $work $pair[1]) $r.Path | Should -BeTrue
        }
    }

    It 'stores the domain XML with the checkpoint' {
        $m = Get-ChildItem (Join-Path $repo 'checkpoints') -Recurse -Filter "*$($second.Id).json" | Get-Content -Raw
        $m | Should -Match ([regex]::Escape("<name>$vm</name>"))
    }

    It 'heals the chain after kill -9 of qemu: a full read that stores only changed blocks, never a failure' {
        Write-VmDisk -Name $vm -Offset 30MB -Length 1MB -Seed 203
        & kill -9 (Get-QemuPid $vm)
        Wait-DomState $vm 'shut off' | Should -Match 'crashed'
        # Shut off: its files are read.
        $off = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $off.Note | Should -BeLike '*not running*'
        $off.StoredBytes | Should -BeLessOrEqual (1MB + 4KB)
        & virsh -c $uri start $vm | Out-Null
        Write-VmDisk -Name $vm -Offset 60MB -Length 1MB -Seed 204
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.StoredBytes | Should -BeLessOrEqual (1MB + 4KB)
        $c.ChangedBytes | Should -Be 1MB
        Copy-VmDisk -Name $vm -Source $disk -Destination (Join-Path $work 'live-3.qcow2')
        $r = Restore-VmCheckpoint -Name $vm -Destination (Join-Path $work 'r-healed') -Repository $repo
        Test-SameImage (Join-Path $work 'live-3.qcow2') $r.Path | Should -BeTrue
        # And the run after is incremental again.
        Write-VmDisk -Name $vm -Offset 10MB -Length 64KB -Seed 205
        (Invoke-VmCheckpoint -Name $vm -Repository $repo).ReadBytes | Should -Be 1MB
    }

    It 'heals the chain when the bitmap was deleted behind its back' {
        $cp = & virsh -c $uri checkpoint-list $vm --name | Where-Object { $_ } | Select-Object -First 1
        $node = (& virsh -c $uri qemu-monitor-command $vm '{"execute":"query-named-block-nodes","arguments":{"flat":true}}' | ConvertFrom-Json).return |
            Where-Object { $_.drv -eq 'qcow2' } | Select-Object -First 1 -ExpandProperty 'node-name'
        & virsh -c $uri qemu-monitor-command $vm ('{"execute":"block-dirty-bitmap-remove","arguments":{"node":"' + $node + '","name":"' + $cp + '"}}') | Out-Null
        Write-VmDisk -Name $vm -Offset 12MB -Length 1MB -Seed 206
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.Note | Should -BeLike '*failed*'
        $c.ChangedBytes | Should -Be 1MB
        (Get-VmCheckpointJob -Name $vm -Last 1).Message | Should -BeLike '*failed*'
        Copy-VmDisk -Name $vm -Source $disk -Destination (Join-Path $work 'live-4.qcow2')
        $r = Restore-VmCheckpoint -Name $vm -Destination (Join-Path $work 'r-bitmap') -Repository $repo
        Test-SameImage (Join-Path $work 'live-4.qcow2') $r.Path | Should -BeTrue
    }
}

Describe 'Live checkpoints: two disks, names, errors' {
    It 'checkpoints a two-disk VM (qcow2 with bitmaps, raw by hash) at one instant' {
        $a = New-Disk 'two-a.qcow2'
        $b = New-Disk 'two-b.raw' -Format raw
        $vm = New-Vm 'two' $a, $b
        $c1 = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c1.Disks.Name | Should -Be @('vda', 'vdb')
        Write-VmDisk -Name $vm -DiskIndex 0 -Offset 16MB -Seed 301
        Write-VmDisk -Name $vm -DiskIndex 1 -Offset 24MB -Seed 302
        $c2 = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c2.ChangedBytes | Should -Be 2MB
        Copy-VmDisk -Name $vm -Source $a -Destination (Join-Path $work 'two-a-now.qcow2')
        Copy-VmDisk -Name $vm -Source $b -Destination (Join-Path $work 'two-b-now.qcow2') -DiskIndex 1
        $r = Restore-VmCheckpoint -Name $vm -Destination (Join-Path $work 'r-two') -Repository $repo
        Test-SameImage (Join-Path $work 'two-a-now.qcow2') ($r | Where-Object Name -eq vda).Path | Should -BeTrue
        Test-SameImage (Join-Path $work 'two-b-now.qcow2') ($r | Where-Object Name -eq vdb).Path | Should -BeTrue
    }

    It 'reads a disk whole when its file was swapped with another disk''s: their bitmaps tell the other disk''s history' {
        $a = New-Disk 'swap-a.qcow2'
        $b = New-Disk 'swap-b.qcow2' -Offsets 0, 16MB, 48MB
        $vm = New-Vm 'swap' $a, $b
        Invoke-VmCheckpoint -Name $vm -Repository $repo | Out-Null
        Write-VmDisk -Name $vm -DiskIndex 1 -Offset 30MB -Seed 311   # lands in b's bitmap
        # The same domain (its libvirt checkpoint stays), redefined with the two files swapped: vda is b's file now.
        Invoke-Virsh destroy $vm | Out-Null
        $xml = (Invoke-Virsh dumpxml --inactive $vm) -join "`n"
        $xml = $xml.Replace($a, '@A@').Replace($b, $a).Replace('@A@', $b)
        $file = Join-Path $work 'swap.xml'
        Set-Content $file $xml
        Invoke-Virsh define $file | Out-Null
        Invoke-Virsh start $vm | Out-Null
        Write-VmDisk -Name $vm -DiskIndex 0 -Offset 2MB -Seed 312
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.Note | Should -Match 'vda is .*swap-b.qcow2 now'
        Copy-VmDisk -Name $vm -Source $b -Destination (Join-Path $work 'swap-vda-now.qcow2')
        Copy-VmDisk -Name $vm -Source $a -Destination (Join-Path $work 'swap-vdb-now.qcow2') -DiskIndex 1
        $r = $c | Restore-VmCheckpoint -Destination (Join-Path $work 'r-swap') -Repository $repo
        Test-SameImage (Join-Path $work 'swap-vda-now.qcow2') ($r | Where-Object Name -eq vda).Path | Should -BeTrue
        Test-SameImage (Join-Path $work 'swap-vdb-now.qcow2') ($r | Where-Object Name -eq vdb).Path | Should -BeTrue
    }

    It 'checkpoints a VM named with spaces and quotes' {
        $name = $prefix + "it's a `"quoted`" vm"
        $d = New-Disk 'quoted.qcow2'
        New-TestVm -Name $name -DiskPath $d
        $vms.Add($name)
        (Invoke-VmCheckpoint -Name $name -Repository $repo).VmName | Should -Be $name
        (Get-CheckpointedVm -Name $name -Repository $repo).Hypervisor | Should -Be 'Libvirt'
    }

    It 'stops cleanly on SIGTERM (systemctl stop): no backup job, no checkpoint, no temporary file left' {
        # 1 GiB of random data keeps the full read going long enough to be interrupted while libvirt's backup job runs.
        $raw = Join-Path $work 'sigterm.raw'
        & sh -c "head -c 1024M /dev/urandom > '$raw'"
        $d = Join-Path $work 'sigterm.qcow2'
        & qemu-img convert -f raw -O qcow2 $raw $d
        Remove-Item $raw
        & chmod 666 $d
        $name = New-Vm 'sigterm' $d
        $r = Join-Path $work 'sigterm-repo'
        New-VmCheckpointRepository -Path $r | Out-Null
        $out = Join-Path $work 'sigterm.out'; $err = Join-Path $work 'sigterm.err'
        $p = Start-PwshScript -Script "Invoke-VmCheckpoint -Name '$name' -Repository '$r' -ConnectionUri '$uri'" -WorkingDirectory $work -StdOut $out -StdErr $err
        $deadline = [DateTime]::UtcNow.AddSeconds(60)
        while (-not $p.HasExited -and [DateTime]::UtcNow -lt $deadline -and -not ((& virsh -c $uri domjobinfo $name 2>$null) -match 'Backup')) { Start-Sleep -Milliseconds 50 }
        $p.HasExited | Should -BeFalse -Because 'the checkpoint must still be reading when the signal comes'
        & kill -TERM $p.Id
        $p.WaitForExit(40000) | Should -BeTrue
        $p.ExitCode | Should -Not -Be 0
        (& virsh -c $uri domjobinfo $name) -join ' ' | Should -Not -Match 'Backup'
        @(& virsh -c $uri checkpoint-list $name --name | Where-Object { "$_".Trim() }).Count | Should -Be 0
        @(Get-ChildItem $r -Recurse -File | Where-Object Name -like '*.tmp*').Count | Should -Be 0
        @(Get-VmCheckpoint -Name $name -Repository $r -ErrorAction SilentlyContinue).Count | Should -Be 0
        # And the next run is an ordinary first checkpoint.
        (Invoke-VmCheckpoint -Name $name -Repository $r).ReadBytes | Should -Be 1GB
    }

    It 'gives ObjectNotFound for a missing VM, and ResourceUnavailable for an unreachable host' {
        $e = { Invoke-VmCheckpoint -Name ($prefix + 'nosuchvm') -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e = { Invoke-VmCheckpoint -Name x -ConnectionUri 'qemu+unix:///system?socket=/nonexistent/sock' -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
    }
}

Describe 'Disks a running VM holds' {
    BeforeAll {
        $script:heldDisk = New-Disk 'held.qcow2'
        $script:heldVm = New-Vm 'held' $heldDisk
    }

    It 'refuses -DiskPath on a running VM''s disk with ResourceBusy naming the VM, storing and writing nothing' {
        $before = (Get-FileHash $heldDisk).Hash
        $count = @(Get-VmCheckpoint -Repository $repo).Count
        $e = { Invoke-VmCheckpoint -Name offline-copy -DiskPath $heldDisk -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceBusy'
        $e.FullyQualifiedErrorId | Should -BeLike 'OpenDisk.DiskInUse*'
        $e.Exception.Message | Should -BeLike "*'$heldVm'*Invoke-VmCheckpoint -Name*"
        $e.TargetObject | Should -Be $heldDisk
        @(Get-VmCheckpoint -Repository $repo).Count | Should -Be $count
        (& qemu-img info -U --output=json $heldDisk | ConvertFrom-Json).'format-specific'.data.bitmaps | Should -BeNullOrEmpty
        Copy-VmDisk -Name $heldVm -Source $heldDisk -Destination (Join-Path $work 'held-copy.qcow2')
        Get-DomState $heldVm | Should -Match 'running'
    }

    It 'never restores over a disk a running VM holds, even with -Force' {
        # A checkpoint whose disk is named as the running VM's file (held), restored into that file's folder.
        $copyFolder = New-Item -ItemType Directory -Path (Join-Path $work 'held-copy-folder') -Force
        Copy-VmDisk -Name $heldVm -Source $heldDisk -Destination (Join-Path $copyFolder 'held.qcow2')
        $c = Invoke-VmCheckpoint -Name held-offline -DiskPath (Join-Path $copyFolder 'held.qcow2') -NoChangeTracking -Repository $repo
        $c.Disks.Name | Should -Be 'held'
        $folder = Split-Path $heldDisk
        Write-VmDisk -Name $heldVm -Offset 30MB -Seed 303
        Copy-VmDisk -Name $heldVm -Source $heldDisk -Destination (Join-Path $work 'held-now.qcow2')
        $e = { Restore-VmCheckpoint -Name held-offline -Destination $folder -DiskFormat qcow2 -Force -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceBusy'
        $e.Exception.Message | Should -BeLike "*$heldDisk*'$heldVm'*"
        Test-Path $heldDisk | Should -BeTrue
        @(Get-ChildItem $folder -Filter 'vmcheckpoint-restore-*').Count | Should -Be 0
        @(Get-ChildItem $folder -Filter 'held.qcow2.replaced-*').Count | Should -Be 0
        & qemu-img compare -U (Join-Path $work 'held-now.qcow2') $heldDisk | Out-Null
        $LASTEXITCODE | Should -Be 0 -Because 'the running VM''s disk is untouched'
        Get-DomState $heldVm | Should -Match 'running'
    }
}

Describe 'Restore-VmCheckpoint of a libvirt VM, here and on another host' {
    BeforeAll {
        $script:mdisk = New-Disk 'mem.qcow2'
        $script:mvm = New-Vm 'mem' $mdisk
        $script:withMemory = Invoke-VmCheckpoint -Name $mvm -IncludeMemory -Repository $repo
    }

    It 'takes memory state with the disks and reports the pause' {
        $withMemory.IncludesMemory | Should -BeTrue
        $withMemory.MemoryBytes | Should -BeGreaterThan 0
        $withMemory.PauseSeconds | Should -BeGreaterThan 0
        Get-DomState $mvm | Should -Match 'running'
        (Test-VmCheckpoint -Id $withMemory.Id -ReadData -Repository $repo).Status | Should -Be 'Healthy'
    }

    It 'resumes the VM from its memory state on a second host' {
        $dest = Join-Path $work 'on-second-host'
        $r = Restore-VmCheckpoint -Name $mvm -Id $withMemory.Id -Destination $dest -ConnectionUri $secondUri -ResumeMemory -Repository $repo
        $r.ResumedFromMemory | Should -BeTrue
        Get-DomState $mvm $secondUri | Should -Match 'running'
        (& virsh -c $secondUri domblklist $mvm) | Out-String | Should -Match ([regex]::Escape((Join-Path $dest 'vda.qcow2')))
    }

    It 'refuses to clobber an existing domain without -Force, leaving nothing behind' {
        $dest = Join-Path $work 'clobber'
        $e = { Restore-VmCheckpoint -Name $mvm -Destination $dest -Register -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceExists'
        @(Get-ChildItem $dest -ErrorAction SilentlyContinue).Count | Should -Be 0
    }

    It 'defines a copy under a new name and starts it' {
        $new = $prefix + 'copy'
        $vms.Add($new)
        $r = Restore-VmCheckpoint -Name $mvm -Destination (Join-Path $work 'copy') -NewName $new -Start -Repository $repo
        $r.VmName | Should -Be $new
        Get-DomState $new | Should -Match 'running'
        (& virsh -c $uri domuuid $new | Out-String).Trim() | Should -Not -Be (& virsh -c $uri domuuid $mvm | Out-String).Trim()
    }
}
