BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $disk = New-TestImage -Path (Join-Path $work 'a.qcow2') -Size 16MB -Offsets 0
    $script:ids = foreach ($i in 1..3) {
        Write-TestData -Path $disk -Offsets (2MB * $i) -Seed $i
        (Invoke-VmCheckpoint -Name alpha -DiskPath $disk -Repository $repo).Id
    }
    $script:betaId = (Invoke-VmCheckpoint -Name beta -DiskPath $disk -Repository $repo).Id
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Get-VmCheckpoint' {
    It 'lists every checkpoint, newest first' {
        $all = Get-VmCheckpoint -Repository $repo
        $all.Count | Should -Be 4
        $all[0].Id | Should -Be $betaId
        ($all | Select-Object -Skip 1).Id | Should -Be @($ids[2], $ids[1], $ids[0])
        for ($i = 1; $i -lt $all.Count; $i++) { $all[$i - 1].Time | Should -BeGreaterOrEqual $all[$i].Time }
    }

    It 'filters by name with wildcards' {
        (Get-VmCheckpoint -Name 'al*' -Repository $repo).Count | Should -Be 3
        (Get-VmCheckpoint -Name 'BETA' -Repository $repo).Id | Should -Be $betaId
    }

    It 'finds a checkpoint by id or by a unique prefix' {
        (Get-VmCheckpoint -Id $ids[1] -Repository $repo).Id | Should -Be $ids[1]
        (Get-VmCheckpoint -Id $ids[1].Substring(0, 8) -Repository $repo).Id | Should -Be $ids[1]
    }

    It 'shows only the newest of each VM with -Latest' {
        $latest = Get-VmCheckpoint -Latest -Repository $repo
        $latest.Id | Sort-Object | Should -Be (@($ids[2], $betaId) | Sort-Object)
    }

    It 'gives ObjectNotFound for an unknown VM or id' {
        $e = { Get-VmCheckpoint -Name nosuchvm -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $e = { Get-VmCheckpoint -Id 'ffffffffffffffff' -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Get-VmCheckpoint -Name 'nosuch*' -Repository $repo | Should -BeNullOrEmpty
    }

    It 'reports each unknown name as its own non-terminating error, naming it' {
        $found = Get-VmCheckpoint -Name beta, nosuch1, nosuch2 -Repository $repo -ErrorVariable failures -ErrorAction SilentlyContinue
        @($found).Count | Should -BeGreaterThan 0
        $failures.Count | Should -Be 2
        $failures.TargetObject | Should -Be @('nosuch1', 'nosuch2')
        $failures[0].CategoryInfo.TargetType | Should -Be 'String'
    }

    It 'lets -ErrorAction rule a missing repository, naming it' {
        $missing = Join-Path $work 'missing-repo'
        $out = Get-VmCheckpoint -Repository $missing -ErrorVariable failures -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        $failures.Count | Should -Be 1
        $failures[0].TargetObject | Should -Be $missing
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
        Get-CheckpointedVm -Repository $missing -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        { Get-CheckpointedVm -Repository $missing -ErrorAction Stop } | Should -Throw
    }

    It 'takes Get-VM-shaped objects from the pipeline by name, never their GUID as a checkpoint id' {
        $fromGetVm = [pscustomobject]@{ Name = 'beta'; VMName = 'beta'; Id = [guid]::NewGuid(); VMId = [guid]::NewGuid() }
        $c = @($fromGetVm | Get-VmCheckpoint -Repository $repo)
        $c.Count | Should -BeGreaterThan 0
        $c.VmName | Sort-Object -Unique | Should -Be 'beta'
    }

    It 'formats as a table that fits 80 columns, with Time, VmName, Id and Stored whole' {
        $lines = @(Get-VmCheckpoint -Repository $repo | Out-String -Width 80 -Stream | Where-Object { $_.Trim() })
        $lines[0] | Should -Match '^Time\s+VmName\s+Id\s+Size\s+Changed\s+Stored\s+Pause$'
        $lines | ForEach-Object { $_.Length | Should -BeLessOrEqual 80 }
        ($lines -join "`n") | Should -Match $betaId
        ($lines -join "`n") | Should -Not -Match '…'
    }
}

Describe 'Get-CheckpointedVm' {
    It 'lists one object per VM with count, latest and stored bytes' {
        $vms = Get-CheckpointedVm -Repository $repo
        $vms.Name | Should -Be @('alpha', 'beta')
        $alpha = $vms | Where-Object Name -eq 'alpha'
        $alpha.CheckpointCount | Should -Be 3
        $alpha.LatestId | Should -Be $ids[2]
        $alpha.Hypervisor | Should -Be 'Offline'
        $alpha.Host | Should -Be ([Environment]::MachineName)
        $alpha.StoredBytes | Should -BeGreaterOrEqual 3MB   # three distinct random blocks (the fourth repeats the first)
        ($vms | Where-Object Name -eq 'beta').StoredBytes | Should -Be 0
    }

    It 'filters with wildcards and reports an unknown name' {
        (Get-CheckpointedVm -Name b* -Repository $repo).Name | Should -Be 'beta'
        $e = { Get-CheckpointedVm -Name gamma -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'formats as a table' {
        Get-CheckpointedVm -Repository $repo | Out-String -Width 200 | Should -Match 'Name\s+Hypervisor\s+Host\s+Checkpoints\s+Latest'
    }
}

Describe 'The catalog' {
    It 'is rebuilt from the repository when deleted, or on a host that never saw it' {
        $before = (Get-VmCheckpoint -Repository $repo).Id
        $fresh = Join-Path $work 'other-host-catalog.db'
        (Get-VmCheckpoint -Repository $repo -CatalogPath $fresh).Id | Should -Be $before
        Remove-Item $env:VMCHECKPOINT_CATALOG
        (Get-VmCheckpoint -Repository $repo).Id | Should -Be $before
        (Get-CheckpointedVm -Repository $repo -Name alpha).CheckpointCount | Should -Be 3
    }

    It 'forgets checkpoints removed by another host' {
        $other = Join-Path $work 'second-host.db'
        $victim = $ids[0]
        Get-VmCheckpoint -Id $victim -Repository $repo -CatalogPath $other | Remove-VmCheckpoint -Confirm:$false -CatalogPath $other | Out-Null
        Get-VmCheckpoint -Repository $repo | Where-Object Id -eq $victim | Should -BeNullOrEmpty
    }
}
