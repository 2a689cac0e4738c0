# The foundation scenario end to end, on real images made by qemu-img and written by qemu-io, in real
# pwsh processes: checkpoint, change 1% of the blocks, checkpoint again, restore both, lose the catalog,
# kill checkpoint runs at random instants, run two checkpoints at once.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    # sys: 512 MiB virtual, 200 MiB of data in 50 scattered 4 MiB runs; data: 64 MiB raw, 16 MiB of data.
    $script:sys = Join-Path $work 'sys.qcow2'
    $rng = [Random]::new(42)
    $offsets = 0..127 | Sort-Object { $rng.Next() } | Select-Object -First 50 | ForEach-Object { [long]$_ * 4MB }
    New-TestImage -Path $sys -Size 512MB -Offsets $offsets -Length 4MB -Seed 1 | Out-Null
    $script:data = New-TestImage -Path (Join-Path $work 'data.raw') -Size 64MB -Format raw -Offsets 0, 16MB, 32MB, 60MB -Length 4MB -Seed 2
    $script:dataBlocks = 216   # 200 + 16 one-MiB blocks hold data
    function script:Save-Sources([string] $Tag) {
        $dir = Join-Path $work "at-$Tag"
        New-Item -ItemType Directory $dir | Out-Null
        Copy-Item $sys, $data $dir
        $dir
    }
    function script:Assert-Restores([string] $Id, [string] $SourceDir) {
        $dest = Join-Path $work "restore-$Id"
        $r = Restore-VmCheckpoint -Name app -Id $Id -Destination $dest -Repository $repo -Force
        Test-SameImage (Join-Path $SourceDir 'sys.qcow2') ($r | Where-Object Name -eq sys).Path | Should -BeTrue -Because "checkpoint $Id restores sys"
        Test-SameImage (Join-Path $SourceDir 'data.raw') ($r | Where-Object Name -eq data).Path | Should -BeTrue -Because "checkpoint $Id restores data"
        Test-ImageChecks ($r | Where-Object Name -eq sys).Path | Should -BeTrue
        Remove-Item $dest -Recurse -Force
    }
    $script:taken = [ordered]@{}
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'End to end: checkpoint, change 1%, checkpoint, restore' {
    It 'stores every data block once in the first checkpoint' {
        $c = Invoke-VmCheckpoint -Name app -DiskPath $sys, $data -Repository $repo
        $c.ReadBytes | Should -Be ($dataBlocks * 1MB)
        $c.ChangedBytes | Should -Be ($dataBlocks * 1MB)
        $c.StoredBytes | Should -BeGreaterThan ($dataBlocks * 1MB * 0.99)
        $taken[$c.Id] = Save-Sources 1
    }

    It 'stores only the changed blocks in the second' {
        # 1% of the data blocks: two 64 KiB writes inside two blocks of sys (one allocated, one new).
        Write-TestData -Path $sys -Offsets ($taken.Keys.Count * 0 + 12MB + 64KB), (300MB + 128KB) -Length 64KB -Seed 77
        $c = Invoke-VmCheckpoint -Name app -DiskPath $sys, $data -Repository $repo
        $c.ChangedBytes | Should -Be 2MB
        $c.StoredBytes | Should -BeGreaterThan 1MB
        $c.StoredBytes | Should -BeLessOrEqual (2MB + 4KB)
        $c.ParentId | Should -Be @($taken.Keys)[0]
        $taken[$c.Id] = Save-Sources 2
    }

    It 'restores both checkpoints equal to the disks at their instant' {
        foreach ($id in @($taken.Keys)) { Assert-Restores $id $taken[$id] }
    }

    It 'rebuilds a deleted catalog from the repository' {
        $before = Get-VmCheckpoint -Repository $repo | Select-Object Id, VmName, Time, StoredBytes, ChangedBytes
        Remove-Item $env:VMCHECKPOINT_CATALOG -Force
        $after = Get-VmCheckpoint -Repository $repo | Select-Object Id, VmName, Time, StoredBytes, ChangedBytes
        ($after | ConvertTo-Json) | Should -Be ($before | ConvertTo-Json)
        (Get-CheckpointedVm -Name app -Repository $repo).CheckpointCount | Should -Be 2
    }
}

Describe 'End to end: checkpoint processes killed at random instants' {
    It 'leaves every earlier checkpoint intact and the next run working' {
        $rng = [Random]::new(7)
        $delays = @(300, 900, 1500, 2200, 3000) | ForEach-Object { $_ + $rng.Next(300) }
        $i = 0
        foreach ($delay in $delays) {
            $i++
            # New data so that the killed run has blocks to store, not only hashes to compare.
            Write-TestData -Path $sys -Offsets (($i * 37 % 120) * 4MB), (($i * 53 % 120) * 4MB + 2MB) -Length 2MB -Seed (1000 + $i)
            $p = Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work "kill-$i.out") -StdErr (Join-Path $work "kill-$i.err") -Script @"
`$env:VMCHECKPOINT_CATALOG = '$env:VMCHECKPOINT_CATALOG'
Invoke-VmCheckpoint -Name app -DiskPath '$sys', '$data' -Repository '$repo' | Out-Null
"@
            Start-Sleep -Milliseconds $delay
            if (-not $p.HasExited) { & kill -9 $p.Id }
            $p.WaitForExit()
            # Whatever the instant, everything taken so far is whole, and the next run (this process) works.
            $ids = (Get-VmCheckpoint -Repository $repo -Name app).Id
            foreach ($id in @($taken.Keys)) { $ids | Should -Contain $id }
            $new = $ids | Where-Object { -not $taken.Contains($_) }
            foreach ($id in @($new)) { $taken[$id] = Save-Sources "killed-$i" }   # the run finished before the kill
            $c = Invoke-VmCheckpoint -Name app -DiskPath $sys, $data -Repository $repo
            $taken[$c.Id] = Save-Sources "after-$i"
        }
        $verdicts = Test-VmCheckpoint -Name app -Repository $repo -ReadData
        $verdicts.Status | Sort-Object -Unique | Should -Be 'Healthy'
        foreach ($id in @($taken.Keys)) { Assert-Restores $id $taken[$id] }
        # Nothing is left that blocks anyone: no lock of a dead process stops reclaiming.
        (Remove-VmCheckpoint -Name app -KeepLast 100 -Repository $repo -LockTimeout 5 -Confirm:$false).Reclaim.Completed | Should -BeTrue
    }
}

Describe 'End to end: two processes checkpointing into one repository at once' {
    It 'loses nothing' {
        $second = Join-Path $work 'second.qcow2'
        Copy-Item $sys $second
        Write-TestData -Path $second -Offsets 100MB, 200MB -Length 4MB -Seed 555
        Write-TestData -Path $sys -Offsets 400MB -Length 4MB -Seed 556
        $jobs = foreach ($pair in @(@('app', $sys), @('twin', $second))) {
            Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work "$($pair[0]).out") -StdErr (Join-Path $work "$($pair[0]).err") -Script @"
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work "catalog-$($pair[0]).db")'
Invoke-VmCheckpoint -Name '$($pair[0])' -DiskPath '$($pair[1])' -Repository '$repo' | Out-Null
"@
        }
        foreach ($j in $jobs) { $j.WaitForExit(); $j.ExitCode | Should -Be 0 -Because (Get-Content (Join-Path $work '*.err') -Raw) }
        foreach ($pair in @(@('app', $sys), @('twin', $second))) {
            $dest = Join-Path $work "concurrent-$($pair[0])"
            $r = Restore-VmCheckpoint -Name $pair[0] -Destination $dest -DiskName (Split-Path $pair[1] -LeafBase) -Repository $repo
            Test-SameImage $pair[1] $r.Path | Should -BeTrue
        }
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
    }
}
