BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:source = Join-Path $work 'source'
    New-VmCheckpointRepository -Path $source | Out-Null
    $disk = New-TestImage -Path (Join-Path $work 'vm.qcow2') -Size 16MB -Offsets 0, 4MB, 8MB
    $script:c1 = Invoke-VmCheckpoint -Name vm1 -DiskPath $disk -Repository $source
    Write-TestData -Path $disk -Offsets 12MB -Seed 5
    $script:c2 = Invoke-VmCheckpoint -Name vm1 -DiskPath $disk -Repository $source
    function script:Copy-Repository([string] $Name) {
        $copy = Join-Path $work $Name
        Copy-Item $source $copy -Recurse
        $copy
    }
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Test-VmCheckpoint' {
    It 'reports every checkpoint healthy, with and without -ReadData' {
        $r = Test-VmCheckpoint -Repository $source
        $r.Count | Should -Be 2
        $r.Status | Should -Be @('Healthy', 'Healthy')
        $r[0].BlocksChecked | Should -Be 4
        $r[0].DataRead | Should -BeFalse
        $full = Test-VmCheckpoint -Repository $source -ReadData
        $full.Status | Should -Be @('Healthy', 'Healthy')
        $full[0].DataRead | Should -BeTrue
    }

    It 'takes checkpoints from the pipeline' {
        $r = Get-VmCheckpoint -Id $c1.Id -Repository $source | Test-VmCheckpoint -ReadData
        $r.Id | Should -Be $c1.Id
        $r.Status | Should -Be 'Healthy'
    }

    It 'finds flipped bytes in a pack only with -ReadData, naming the damaged disk' {
        $repo = Copy-Repository 'flipped'
        foreach ($pack in Get-ChildItem (Join-Path $repo 'packs') -Recurse -Filter *.pack) {
            $bytes = [IO.File]::ReadAllBytes($pack.FullName)
            $bytes[200] = $bytes[200] -bxor 0xFF
            [IO.File]::WriteAllBytes($pack.FullName, $bytes)
        }
        (Test-VmCheckpoint -Repository $repo).Status | Should -Be @('Healthy', 'Healthy')
        $r = Test-VmCheckpoint -Repository $repo -ReadData -WarningVariable warnings -WarningAction SilentlyContinue -ErrorVariable damage -ErrorAction SilentlyContinue
        $r.Status | Should -Contain 'Damaged'
        ($r | Where-Object Status -eq Damaged)[0].DamagedDisks | Should -Be 'vm'
        ($r | Where-Object Status -eq Damaged)[0].CorruptBlocks | Should -BeGreaterThan 0
        $warnings.Count | Should -BeGreaterThan 0
        # The packs themselves are named too, one error each.
        $damage | ForEach-Object { $_.FullyQualifiedErrorId | Should -BeLike 'Verify.DamagedPack,*' }
        $damage.Count | Should -Be @(Get-ChildItem (Join-Path $repo 'packs') -Recurse -Filter *.pack).Count
    }

    It 'reports a damaged index file as an error, though every checkpoint is healthy and restores' {
        $repo = Copy-Repository 'index'
        $index = Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($index.FullName)
        $bytes[20] = $bytes[20] -bxor 0x01
        [IO.File]::WriteAllBytes($index.FullName, $bytes)
        foreach ($readData in $false, $true) {
            $r = Test-VmCheckpoint -Repository $repo -ReadData:$readData -ErrorVariable damage -ErrorAction SilentlyContinue -WarningAction SilentlyContinue
            $r.Status | Should -Be @('Healthy', 'Healthy')
            $damage.Count | Should -Be 1
            $damage[0].FullyQualifiedErrorId | Should -BeLike 'Verify.DamagedIndex*'
            $damage[0].CategoryInfo.Category | Should -Be 'InvalidData'
            $damage[0].TargetObject | Should -Be $index.FullName
            $damage[0].ErrorDetails.RecommendedAction | Should -BeLike '*Repair-VmCheckpointRepository*'
        }
        $job = Get-VmCheckpointJob -Repository $repo -Last 1
        $job.Kind | Should -Be 'VerifyData'
        $job.Result | Should -Be 'Failed'
        $r = Restore-VmCheckpoint -Name vm1 -Id $c2.Id -Destination (Join-Path $work 'index-restore') -Repository $repo
        Test-SameImage (Join-Path $work 'vm.qcow2') $r.Path | Should -BeTrue
    }

    It 'finds a flipped byte in a pack''s trailer only with -ReadData' {
        $repo = Copy-Repository 'trailer'
        $pack = Get-ChildItem (Join-Path $repo 'packs') -Recurse -Filter *.pack | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($pack.FullName)
        $bytes[$bytes.Length - 50] = $bytes[$bytes.Length - 50] -bxor 0x40
        [IO.File]::WriteAllBytes($pack.FullName, $bytes)
        Test-VmCheckpoint -Repository $repo -ErrorVariable quick -ErrorAction SilentlyContinue | Out-Null
        $quick.Count | Should -Be 0
        $r = Test-VmCheckpoint -Repository $repo -ReadData -ErrorVariable damage -ErrorAction SilentlyContinue
        $r.Status | Should -Be @('Healthy', 'Healthy')   # the index still finds every block
        $damage.Count | Should -Be 1
        $damage[0].FullyQualifiedErrorId | Should -BeLike 'Verify.DamagedPack*'
        $damage[0].Exception.Message | Should -BeLike '*trailer*'
    }

    It 'refuses a repository whose configuration lost a byte' {
        $repo = Copy-Repository 'config'
        $config = Join-Path $repo 'vmcheckpoint-repository.json'
        (Get-Content -Raw $config) -replace '"zstd"', '"zstD"' | Set-Content -NoNewline $config
        { Test-VmCheckpoint -Repository $repo -CatalogPath (Join-Path $work 'config.db') -ErrorAction Stop } |
            Should -Throw -ErrorId 'OpenRepository.InvalidData*'
    }

    It 'says which packs no index file lists' {
        $repo = Copy-Repository 'lost-index'
        Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Select-Object -First 1 | Remove-Item
        $r = Test-VmCheckpoint -Repository $repo -ReadData -WarningVariable warnings -WarningAction SilentlyContinue -ErrorVariable damage -ErrorAction SilentlyContinue
        $r.Status | Should -Be @('Healthy', 'Healthy')
        $damage.Count | Should -Be 0
        $warnings | Should -HaveCount 1
        "$($warnings[0])" | Should -BeLike '1 pack(s) are in no index file*Repair-VmCheckpointRepository*'
    }

    It 'finds a missing pack without reading data' {
        $repo = Copy-Repository 'missing'
        Get-ChildItem (Join-Path $repo 'packs') -Recurse -Filter *.pack | Select-Object -First 1 | Remove-Item
        $r = Test-VmCheckpoint -Repository $repo -WarningAction SilentlyContinue
        $r.Status | Should -Contain 'Damaged'
        ($r | Measure-Object MissingBlocks -Sum).Sum | Should -BeGreaterThan 0
    }

    It 'reports a damaged manifest' {
        $repo = Copy-Repository 'manifest'
        $m = Get-ChildItem (Join-Path $repo 'checkpoints') -Recurse -Filter *.json | Select-Object -First 1
        (Get-Content -Raw $m.FullName).Replace('"vm1"', '"vm2"') | Set-Content -NoNewline $m.FullName
        $r = Test-VmCheckpoint -Repository $repo -CatalogPath (Join-Path $work 'fresh.db') -WarningAction SilentlyContinue
        $bad = $r | Where-Object Status -eq Damaged
        @($bad).Count | Should -Be 1
        $bad.Problems[0] | Should -BeLike '*checksum*'
    }

    It 'logs the run in the job log' {
        Test-VmCheckpoint -Repository $source | Out-Null
        $job = Get-VmCheckpointJob -Repository $source -Last 1
        $job.Kind | Should -Be 'Verify'
        $job.Result | Should -Be 'Succeeded'
        $job.Message | Should -BeLike '2 checkpoints checked*'
    }

    It 'leaves no lock behind' {
        Test-VmCheckpoint -Repository $source -ReadData | Out-Null
        @(Get-ChildItem (Join-Path $source 'locks') -File).Count | Should -Be 0
    }

    It 'formats as a table' {
        Test-VmCheckpoint -Repository $source | Out-String -Width 200 | Should -Match 'Status\s+Blocks\s+Missing\s+Corrupt'
    }
}
