# Removing what the module leaves in VMs and files between checkpoints, on real libvirt VMs and real qcow2 files:
# libvirt's checkpoints and qemu's bitmaps must be gone (virsh and qemu-img say so), the repository untouched,
# and the next checkpoint must still work.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work, $script:repo, $script:uri = Initialize-LibvirtTestBed
    $script:vm = 'vmckpt-untrack-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
    $script:disk = New-TestImage -Path (Join-Path $work 'untrack.qcow2') -Size 32MB -Offsets 0, 8MB -Seed 71
    & chmod 666 $disk
    New-TestVm -Name $vm -DiskPath $disk
    function script:Get-Bitmaps([string] $Path) {
        $info = & qemu-img info --force-share --output=json $Path | ConvertFrom-Json
        @($info.'format-specific'.data.bitmaps | Where-Object { $_ } | ForEach-Object name)
    }
}
AfterAll {
    Remove-TestVm -Name $vm
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Disable-VmChangeTracking on a libvirt VM' {
    It 'lists the libvirt checkpoints under -WhatIf and removes nothing' {
        Invoke-VmCheckpoint -Name $vm -Repository $repo | Out-Null
        Invoke-VmCheckpoint -Name $vm -Repository $repo | Out-Null
        $before = @(& virsh -c $uri checkpoint-list $vm --name | Where-Object { $_ })
        $before.Count | Should -BeGreaterThan 0
        $verbose = Disable-VmChangeTracking -Name $vm -WhatIf -Verbose 4>&1
        "$verbose" | Should -Match "libvirt checkpoint vmckpt-"
        @(& virsh -c $uri checkpoint-list $vm --name | Where-Object { $_ }) | Should -Be $before
    }

    It 'removes every libvirt checkpoint and its bitmaps, leaving the repository as it was' {
        $checkpoints = @(Get-VmCheckpoint -Name $vm -Repository $repo)
        $r = Disable-VmChangeTracking -Name $vm -Confirm:$false
        $r.Removed | Should -BeTrue
        $r.Items | Should -Match '^libvirt checkpoint vmckpt-'
        @(& virsh -c $uri checkpoint-list $vm --name | Where-Object { $_ }).Count | Should -Be 0
        @(Get-VmCheckpoint -Name $vm -Repository $repo).Id | Should -Be $checkpoints.Id
        # qemu dropped the bitmaps: once the VM is off, the file holds none.
        & virsh -c $uri destroy $vm | Out-Null
        Get-Bitmaps $disk | Should -BeNullOrEmpty
        & virsh -c $uri start $vm | Out-Null
    }

    It 'lets the next checkpoint run, reading everything once, and restore equal' {
        $c = Invoke-VmCheckpoint -Name $vm -Repository $repo
        $c.ReadBytes | Should -BeGreaterThan 0
        $c.StoredBytes | Should -BeLessThan 1MB   # nothing changed: read again, stored as before
        (Disable-VmChangeTracking -Name $vm -Confirm:$false).Items.Count | Should -BeGreaterThan 0
    }

    It 'leaves a VM that virsh can undefine' {
        & virsh -c $uri destroy $vm | Out-Null
        $out = & virsh -c $uri undefine $vm --nvram 2>&1
        $LASTEXITCODE | Should -Be 0 -Because "$out"
        New-TestVm -Name $vm -DiskPath $disk   # back, for AfterAll
    }

    It 'says which VM it does not know' {
        $e = { Disable-VmChangeTracking -Name 'no-such-vm-untrack' -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e.TargetObject | Should -Be 'no-such-vm-untrack'
    }
}

Describe 'Disable-VmChangeTracking on image files' {
    BeforeAll {
        $script:image = New-TestImage -Path (Join-Path $work 'offline.qcow2') -Size 16MB -Offsets 0 -Seed 72
        Invoke-VmCheckpoint -Name offline -DiskPath $image -Repository $repo | Out-Null
    }

    It 'removes the vmcheckpoint bitmaps of a file checkpointed with -DiskPath, and nothing else' {
        & qemu-img bitmap --add $image mine
        (Get-Bitmaps $image) -match '^vmcheckpoint-' | Should -Not -BeNullOrEmpty
        Disable-VmChangeTracking -DiskPath $image -WhatIf
        (Get-Bitmaps $image) -match '^vmcheckpoint-' | Should -Not -BeNullOrEmpty
        $r = Disable-VmChangeTracking -DiskPath $image -Confirm:$false
        $r.Items | Should -Match '^bitmap vmcheckpoint-.* in '
        Get-Bitmaps $image | Should -Be @('mine')
        & qemu-img check -q $image
        $LASTEXITCODE | Should -Be 0
        $restored = Restore-VmCheckpoint -Name offline -Destination (Join-Path $work 'offline-restored') -Repository $repo
        Test-SameImage $image $restored.Path | Should -BeTrue
    }

    It 'refuses a file a process holds, naming it, and changes nothing' {
        Invoke-VmCheckpoint -Name offline -DiskPath $image -Repository $repo | Out-Null
        # Another process holds it open, as a forgotten qemu-img or a copy would.
        $holder = Start-Process -FilePath bash -ArgumentList "-c `"exec 3<'$image'; sleep 60`"" -PassThru
        Start-Sleep -Milliseconds 500
        try {
            $e = { Disable-VmChangeTracking -DiskPath $image -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
            $e.CategoryInfo.Category | Should -Be 'ResourceBusy'
            $e.Exception.Message | Should -BeLike "*$image*"
        }
        finally { Stop-Process -Id $holder.Id -Force -ErrorAction SilentlyContinue }
        (Get-Bitmaps $image) -match '^vmcheckpoint-' | Should -Not -BeNullOrEmpty
    }
}
