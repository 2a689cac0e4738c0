BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:source = Join-Path $work 'source'
    New-VmCheckpointRepository -Path $source | Out-Null
    $script:disk = New-TestImage -Path (Join-Path $work 'vm.qcow2') -Size 16MB -Offsets 0, 4MB, 8MB
    $script:c1 = Invoke-VmCheckpoint -Name vm1 -DiskPath $disk -Repository $source
    Copy-Item $disk (Join-Path $work 'vm-1.qcow2')
    Write-TestData -Path $disk -Offsets 12MB -Seed 5
    $script:c2 = Invoke-VmCheckpoint -Name vm1 -DiskPath $disk -Repository $source
    function script:Copy-Repository([string] $Name) {
        $copy = Join-Path $work $Name
        Copy-Item $source $copy -Recurse
        $copy
    }
    function script:Get-Files([string] $Repo, [string] $Folder) {
        @(Get-ChildItem (Join-Path $Repo $Folder) -Recurse -File | Sort-Object FullName | ForEach-Object { '{0} {1}' -f $_.FullName, (Get-FileHash $_.FullName).Hash })
    }
    function script:Assert-Restores([string] $Repo) {
        foreach ($pair in @(@($c1.Id, (Join-Path $work 'vm-1.qcow2')), @($c2.Id, $disk))) {
            $dest = Join-Path $work ("restore-" + [guid]::NewGuid().ToString('N'))
            $r = Restore-VmCheckpoint -Name vm1 -Id $pair[0] -Destination $dest -Repository $Repo
            Test-SameImage $pair[1] $r.Path | Should -BeTrue
            Remove-Item $dest -Recurse -Force
        }
    }
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Repair-VmCheckpointRepository' {
    It 'rebuilds a damaged index file from the packs, after which verification is healthy' {
        $repo = Copy-Repository 'damaged'
        $index = Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($index.FullName)
        $bytes[30] = $bytes[30] -bxor 0x08
        [IO.File]::WriteAllBytes($index.FullName, $bytes)
        Test-VmCheckpoint -Repository $repo -ReadData -ErrorVariable before -ErrorAction SilentlyContinue -WarningAction SilentlyContinue | Out-Null
        $before.FullyQualifiedErrorId | Should -BeLike 'Verify.DamagedIndex*'
        $packs = Get-Files $repo 'packs'

        $r = Repair-VmCheckpointRepository -Repository $repo -Confirm:$false
        $r.Applied | Should -BeTrue
        $r.DamagedIndexFiles | Should -HaveCount 1
        $r.DamagedIndexFiles[0] | Should -Be "index/$($index.Name)"
        $r.PacksRead | Should -Be 2
        $r.PacksIndexed | Should -Be 1
        $r.IndexesRebuilt | Should -Be 1
        $r.IndexFilesRemoved | Should -Be 2
        $r.DamagedPacks | Should -HaveCount 0
        $r.MissingBlocks | Should -Be 0
        @(Get-ChildItem (Join-Path $repo 'index') -Filter *.idx).Count | Should -Be 1

        $after = Test-VmCheckpoint -Repository $repo -ReadData -ErrorVariable damage -WarningVariable warnings
        $after.Status | Should -Be @('Healthy', 'Healthy')
        $damage.Count | Should -Be 0
        $warnings.Count | Should -Be 0
        Get-Files $repo 'packs' | Should -Be $packs   # packs are only read
        Assert-Restores $repo
    }

    It 'rebuilds lost index files' {
        $repo = Copy-Repository 'lost'
        Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Remove-Item
        $r = [pscustomobject]@{ Repository = $repo } | Repair-VmCheckpointRepository -Confirm:$false
        $r.IndexFilesRead | Should -Be 0
        $r.PacksIndexed | Should -Be 2
        $r.BlobsIndexed | Should -BeGreaterThan 0
        (Test-VmCheckpoint -Repository $repo -ReadData -WarningVariable warnings).Status | Should -Be @('Healthy', 'Healthy')
        $warnings.Count | Should -Be 0
        Assert-Restores $repo
    }

    It 'changes nothing with -WhatIf' {
        $repo = Copy-Repository 'whatif'
        Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Select-Object -First 1 | Remove-Item
        $index = Get-Files $repo 'index'
        $r = Repair-VmCheckpointRepository -Repository $repo -WhatIf
        $r | Should -BeNullOrEmpty
        Get-Files $repo 'index' | Should -Be $index
        @(Get-ChildItem (Join-Path $repo 'locks') -File).Count | Should -Be 0
    }

    It 'has nothing to do on a healthy repository' {
        $index = Get-Files $source 'index'
        $r = Repair-VmCheckpointRepository -Repository $source
        $r.Needed | Should -BeFalse
        $r.Applied | Should -BeFalse
        $r.IndexesRebuilt | Should -Be 0
        $r.Actions | Should -HaveCount 0
        Get-Files $source 'index' | Should -Be $index
    }

    It 'keeps a pack whose trailer is damaged, and warns about it' {
        $repo = Copy-Repository 'trailer'
        $pack = Get-ChildItem (Join-Path $repo 'packs') -Recurse -Filter *.pack | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($pack.FullName)
        $bytes[$bytes.Length - 60] = $bytes[$bytes.Length - 60] -bxor 0x02
        [IO.File]::WriteAllBytes($pack.FullName, $bytes)
        $packs = Get-Files $repo 'packs'
        $r = Repair-VmCheckpointRepository -Repository $repo -Confirm:$false -WarningVariable warnings
        $r.DamagedPacks | Should -HaveCount 1
        $r.DamagedPacks[0] | Should -BeLike "packs/*/$($pack.BaseName).pack*trailer*"
        $warnings.Count | Should -Be 1
        Get-Files $repo 'packs' | Should -Be $packs
        Assert-Restores $repo
    }

    It 'waits for the lock of a running checkpoint, then gives up' {
        $repo = Copy-Repository 'locked'
        # A live shared lock: this very process.
        $me = Get-Process -Id $PID
        @{ kind = 'shared'; host = [Environment]::MachineName; pid = $PID; processStart = $me.StartTime.ToUniversalTime().ToString('o'); time = [DateTime]::UtcNow.ToString('o') } |
            ConvertTo-Json | Set-Content (Join-Path $repo 'locks/00112233445566778899aabbccddeeff.lock')
        { Repair-VmCheckpointRepository -Repository $repo -LockTimeout 0 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'Repair.RepositoryLocked*'
    }

    It 'logs the run in the job log' {
        $repo = Copy-Repository 'logged'
        Get-ChildItem (Join-Path $repo 'index') -Filter *.idx | Remove-Item
        Repair-VmCheckpointRepository -Repository $repo -Confirm:$false | Out-Null
        $job = Get-VmCheckpointJob -Repository $repo -Last 1
        $job.Kind | Should -Be 'Repair'
        $job.Result | Should -Be 'Succeeded'
        $job.Message | Should -BeLike '*indexed from their trailers*'
    }

    It 'has help for every parameter and examples' {
        $help = Get-Help Repair-VmCheckpointRepository -Full
        $help.Synopsis | Should -BeLike 'Rebuilds*'
        @($help.Examples.Example).Count | Should -BeGreaterThan 0
        foreach ($p in $help.Parameters.Parameter) { "$($p.Description.Text)" | Should -Not -BeNullOrEmpty -Because "-$($p.Name) needs a description" }
        (Get-Command Repair-VmCheckpointRepository).OutputType.Name | Should -Contain 'VmCheckpoint.Core.Repository.RepairResult'
    }
}
