BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    # Two disks of one VM: a qcow2 with data at both ends and an odd-sized raw one.
    $script:sys = New-TestImage -Path (Join-Path $work 'sys.qcow2') -Size 48MB -Offsets 0, 7MB, 47MB
    # A raw disk whose size is no multiple of 512, with data in its very last bytes.
    $script:data = Join-Path $work 'data.raw'
    New-TestImage -Path $data -Size 10MB -Format raw -Offsets 3MB | Out-Null
    $fs = [IO.File]::OpenWrite($data); $fs.SetLength(10MB + 100); $fs.Position = 10MB + 100 - 1000
    $fs.Write([byte[]](1..250) * 4, 0, 1000); $fs.Dispose()
    $script:first = Invoke-VmCheckpoint -Name db -DiskPath $sys, $data -Repository $repo
    Copy-Item $sys (Join-Path $work 'sys-at-first.qcow2')
    Write-TestData -Path $sys -Offsets 7MB, 20MB -Seed 11
    $script:second = Invoke-VmCheckpoint -Name db -DiskPath $sys, $data -Repository $repo
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Restore-VmCheckpoint' {
    It 'restores the latest checkpoint as qcow2 files equal to the sources' {
        $dest = Join-Path $work 'latest'
        $r = Restore-VmCheckpoint -Name db -Destination $dest -Repository $repo -DiskName sys
        $r.Path | Should -Be (Join-Path $dest 'sys.qcow2')
        Test-SameImage $sys $r.Path | Should -BeTrue
        Test-ImageChecks $r.Path | Should -BeTrue
    }

    It 'restores an earlier checkpoint by id, whatever came after' {
        $dest = Join-Path $work 'first'
        $r = Restore-VmCheckpoint -Name db -Id $first.Id -Destination $dest -Repository $repo
        $r.Name | Should -Be @('sys', 'data')
        Test-SameImage (Join-Path $work 'sys-at-first.qcow2') (Join-Path $dest 'sys.qcow2') | Should -BeTrue
        Test-SameImage $sys (Join-Path $dest 'sys.qcow2') | Should -BeFalse
    }

    It 'restores as raw, sparse, with odd sizes and the last sector intact' {
        $dest = Join-Path $work 'raw'
        $r = Restore-VmCheckpoint -Name db -Destination $dest -DiskFormat raw -Repository $repo
        $restored = ($r | Where-Object Name -eq data).Path
        (Get-Item $restored).Length | Should -Be (10MB + 100)
        & cmp $data $restored; $LASTEXITCODE | Should -Be 0
        Test-SameImage $sys ($r | Where-Object Name -eq sys).Path | Should -BeTrue
        $allocated = [long](& du -B1 $restored).Split("`t")[0]
        $allocated | Should -BeLessThan 4MB
    }

    It 'pads an odd-sized disk to whole sectors as qcow2, as qemu-img convert does, with a warning' {
        $dest = Join-Path $work 'odd'
        $r = Restore-VmCheckpoint -Name db -Destination $dest -DiskName data -Repository $repo -WarningVariable warned -WarningAction SilentlyContinue
        "$warned" | Should -BeLike '*512*'
        $r.VirtualSize | Should -Be (10MB + 512)
        & qemu-img compare -f raw -F qcow2 $data $r.Path | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'takes checkpoints from the pipeline' {
        $dest = Join-Path $work 'piped'
        Get-VmCheckpoint -Id $first.Id -Repository $repo | Restore-VmCheckpoint -Destination $dest -DiskName sys | Out-Null
        Test-SameImage (Join-Path $work 'sys-at-first.qcow2') (Join-Path $dest 'sys.qcow2') | Should -BeTrue
    }

    It 'refuses to overwrite without -Force (ResourceExists), and overwrites with it' {
        $dest = Join-Path $work 'force'
        Restore-VmCheckpoint -Name db -Id $first.Id -Destination $dest -DiskName sys -Repository $repo | Out-Null
        $e = { Restore-VmCheckpoint -Name db -Destination $dest -DiskName sys -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceExists'
        Test-SameImage (Join-Path $work 'sys-at-first.qcow2') (Join-Path $dest 'sys.qcow2') | Should -BeTrue
        Restore-VmCheckpoint -Name db -Destination $dest -DiskName sys -Repository $repo -Force -WarningVariable warned 3>$null | Out-Null
        Test-SameImage $sys (Join-Path $dest 'sys.qcow2') | Should -BeTrue
        @(Get-ChildItem $dest -Filter '*.partial*').Count | Should -Be 0
        # The file replaced is kept beside it, never deleted, and the warning says where.
        $kept = @(Get-ChildItem $dest -Filter 'sys.qcow2.replaced-*')
        $kept.Count | Should -Be 1
        Test-SameImage (Join-Path $work 'sys-at-first.qcow2') $kept[0].FullName | Should -BeTrue
        "$warned" | Should -BeLike "*$($kept[0].Name)*"
    }

    It 'writes nothing with -WhatIf' {
        $dest = Join-Path $work 'whatif'
        Restore-VmCheckpoint -Name db -Destination $dest -Repository $repo -WhatIf
        Test-Path $dest | Should -BeFalse
    }

    It 'gives ObjectNotFound for a missing VM, checkpoint or disk' {
        $e = { Restore-VmCheckpoint -Name nosuch -Destination (Join-Path $work 'x') -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e = { Restore-VmCheckpoint -Name db -Id 'deadbeefdeadbeef' -Destination (Join-Path $work 'x') -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e = { Restore-VmCheckpoint -Name db -DiskName vdz -Destination (Join-Path $work 'x') -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'fails with InvalidData on a damaged block and leaves no file behind' {
        $copy = Join-Path $work 'damaged-repo'
        Copy-Item $repo $copy -Recurse
        # The first blob of every pack: the first pack's is block 0 of sys, which every checkpoint uses.
        foreach ($pack in Get-ChildItem (Join-Path $copy 'packs') -Recurse -Filter *.pack) {
            $bytes = [IO.File]::ReadAllBytes($pack.FullName)
            for ($i = 100; $i -lt 2000; $i++) { $bytes[$i] = $bytes[$i] -bxor 0x5A }
            [IO.File]::WriteAllBytes($pack.FullName, $bytes)
        }
        $dest = Join-Path $work 'from-damaged'
        $e = { Restore-VmCheckpoint -Name db -Destination $dest -DiskFormat raw -Repository $copy -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        @(Get-ChildItem $dest -ErrorAction SilentlyContinue | Where-Object Name -like '*.partial*').Count | Should -Be 0
    }
}
