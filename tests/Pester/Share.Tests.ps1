# The repository on a real SMB share: Debian's samba on 127.0.0.1, mounted through smbnetfs (FUSE,
# libsmbclient), both started by tests/hosts/start-smb.sh. Every file the module writes travels over SMB to
# samba, which stores it in a local backing folder; the tests check that folder, not only the mount.
# smbnetfs is slow (about 27 MB/s, 1.5 ms per file created): the images are small.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    # Fails here, with start-smb.sh's reason (no /dev/fuse, no samba, ...), rather than passing without a share.
    $script:smb = Start-TestSmbShare
    $script:work = New-TestFolder
    $script:savedCatalog = $env:VMCHECKPOINT_CATALOG
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repoName = 'repo-' + [guid]::NewGuid().ToString('N').Substring(0, 10)
    $script:repo = Join-Path $smb.Path $repoName
    $script:backing = Join-Path $smb.Backing $repoName
    # 32 MiB qcow2, 8 one-MiB blocks of random data (random: nothing compresses or deduplicates away).
    $script:web = New-TestImage -Path (Join-Path $work 'web.qcow2') -Size 32MB -Offsets 0, 3MB, 4MB, 9MB, 15MB, 16MB, 22MB, 31MB -Seed 11
    $script:taken = [ordered]@{}
    function script:Save-Source([string] $Tag) {
        $copy = Join-Path $work "web-$Tag.qcow2"
        Copy-Item $web $copy
        $copy
    }
    function script:Get-PackBytes([string] $Folder) {
        [long](Get-ChildItem (Join-Path $Folder 'packs') -Recurse -File -Filter *.pack | Measure-Object Length -Sum).Sum
    }
    # The catalog's own view, read without synchronizing it with the repository first.
    function script:Get-CatalogIds([string] $Path, [string] $RepositoryId) {
        $catalog = [VmCheckpoint.Core.Catalog.CheckpointCatalog]::new($Path)
        try { @($catalog.GetCheckpoints($RepositoryId, $null).Id | Sort-Object) } finally { $catalog.Dispose() }
    }
}
AfterAll {
    # smbd stays running for the next run (start-smb.sh is idempotent); what this run wrote goes.
    if ($script:smb) {
        Start-TestSmbShare | Out-Null
        Remove-Item $backing -Recurse -Force -ErrorAction SilentlyContinue
    }
    if ($script:work) { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }
    $env:VMCHECKPOINT_CATALOG = $script:savedCatalog
}

Describe 'A repository on an SMB share (samba through smbnetfs)' {
    It 'is created on the share: samba stores it in its backing folder' {
        $r = New-VmCheckpointRepository -Path $repo
        $config = Join-Path $backing 'vmcheckpoint-repository.json'
        Test-Path $config | Should -BeTrue
        (Get-Content -Raw $config | ConvertFrom-Json).id | Should -Be $r.Id
        foreach ($d in 'packs', 'index', 'checkpoints', 'locks') { Test-Path (Join-Path $backing $d) -PathType Container | Should -BeTrue }
        # Written by smbd as the share's guest account, not by this (root) process: it went over SMB.
        & stat -c %U $config | Should -Be 'nobody'
    }

    It 'takes a checkpoint whose blocks land on the share' {
        $c = Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo
        $c.ChangedBytes | Should -Be 8MB
        $c.StoredBytes | Should -BeGreaterThan (8MB * 0.99)
        Get-PackBytes $backing | Should -BeGreaterOrEqual $c.StoredBytes
        @(Get-ChildItem (Join-Path $backing 'checkpoints') -Recurse -File -Filter "*_$($c.Id).json").Count | Should -Be 1
        $taken[$c.Id] = Save-Source 1
    }

    It 'stores only the changed blocks in the second checkpoint' {
        # 64 KiB writes into three of the eight blocks.
        Write-TestData -Path $web -Offsets (3MB + 64KB), (9MB + 512KB), (22MB + 192KB) -Length 64KB -Seed 12
        $before = Get-PackBytes $backing
        $c = Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo
        $c.ParentId | Should -Be @($taken.Keys)[0]
        $c.ChangedBytes | Should -Be 3MB
        $c.StoredBytes | Should -BeGreaterThan 2MB
        $c.StoredBytes | Should -BeLessOrEqual (3MB + 4KB)
        (Get-PackBytes $backing) - $before | Should -BeLessOrEqual (3MB + 64KB)
        $taken[$c.Id] = Save-Source 2
    }

    It 'holds the same files through the mount as in samba''s folder' {
        Get-RepositoryFiles $repo | Should -Be (Get-RepositoryFiles $backing)
        @(Get-ChildItem $backing -Recurse -File -Filter *.pack).Count | Should -BeGreaterOrEqual 2
        @(Get-ChildItem $backing -Recurse -File -Filter *.tmp).Count | Should -Be 0
    }

    It 'restores both checkpoints equal to the image at their instant' {
        foreach ($id in @($taken.Keys)) {
            $dest = Join-Path $work "restore-$id"
            $r = Restore-VmCheckpoint -Name web -Id $id -Destination $dest -Repository $repo
            Test-SameImage $taken[$id] $r.Path | Should -BeTrue -Because "checkpoint $id restores"
            Test-ImageChecks $r.Path | Should -BeTrue
            Remove-Item $dest -Recurse -Force
        }
    }

    It 'reads every block back healthy' {
        $verdicts = Test-VmCheckpoint -Repository $repo -ReadData
        @($verdicts).Count | Should -Be 2
        $verdicts.Status | Sort-Object -Unique | Should -Be 'Healthy'
    }

    It 'shows every checkpoint to a second host with its own catalog' {
        $other = Join-Path $work 'host2.db'
        $ids = (Get-VmCheckpoint -Repository $repo -CatalogPath $other).Id | Sort-Object
        $ids | Should -Be (@($taken.Keys) | Sort-Object)
        (Get-CheckpointedVm -Name web -Repository $repo -CatalogPath $other).CheckpointCount | Should -Be 2
        Test-Path $other | Should -BeTrue
    }
}

Describe 'Two processes checkpointing into the share repository at once' {
    It 'both succeed and lose nothing' {
        Assert-TwoWritersLoseNothing -Work $work -Repository $repo -AlsoThere web
        # The two runs' locks are gone, on the share itself.
        @(Get-ChildItem (Join-Path $backing 'locks') -File).Count | Should -Be 0
    }
}

Describe 'Reclaiming space on the share' {
    It 'Remove-VmCheckpoint -KeepLast 1 frees samba''s disk, and what remains restores equal' {
        $before = Get-PackBytes $backing
        $first, $second = @($taken.Keys)
        $result = Remove-VmCheckpoint -Name web -KeepLast 1 -Repository $repo -LockTimeout 30 -Confirm:$false
        $result.RemovedIds | Should -Be $first
        $result.Reclaim.Completed | Should -BeTrue
        # The three blocks the second checkpoint replaced are no longer used by anyone.
        $result.Reclaim.BytesReclaimed | Should -BeGreaterThan 2MB
        Get-PackBytes $backing | Should -BeLessThan ($before - 2MB)
        @(Get-ChildItem $backing -Recurse -File -Filter "*_$first.json").Count | Should -Be 0
        (Get-VmCheckpoint -Name web -Repository $repo).Id | Should -Be $second
        $r = Restore-VmCheckpoint -Name web -Id $second -Destination (Join-Path $work 'after-prune') -Repository $repo
        Test-SameImage $taken[$second] $r.Path | Should -BeTrue
        foreach ($name in 'app', 'db') {
            $r = Restore-VmCheckpoint -Name $name -Destination (Join-Path $work "after-prune-$name") -Repository $repo
            Test-SameImage (Join-Path $work "$name.qcow2") $r.Path | Should -BeTrue
        }
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        Get-RepositoryFiles $repo | Should -Be (Get-RepositoryFiles $backing)
    }
}

Describe 'An unreachable share' {
    BeforeAll {
        $script:repositoryId = (Get-Content -Raw (Join-Path $backing 'vmcheckpoint-repository.json') | ConvertFrom-Json).id
        # Brings the catalog in line with the repository, then remembers what it holds.
        $script:known = @((Get-VmCheckpoint -Repository $repo).Id | Sort-Object)
        $script:catalogBefore = Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId
        $catalogBefore | Should -Be $known
        $known.Count | Should -Be 3
        Stop-TestSmbd
    }
    AfterAll { Start-TestSmbShare | Out-Null }

    It 'gives a ResourceUnavailable error for <Command> and leaves the catalog as it was' -ForEach @(
        @{ Command = 'Get-VmCheckpoint'; Run = { Get-VmCheckpoint -Repository $repo } }
        @{ Command = 'Invoke-VmCheckpoint'; Run = { Invoke-VmCheckpoint -Name web -DiskPath $web -Repository $repo } }
        @{ Command = 'Test-VmCheckpoint'; Run = { Test-VmCheckpoint -Repository $repo } }
        @{ Command = 'Remove-VmCheckpoint'; Run = { Remove-VmCheckpoint -Id $known[0] -Repository $repo -Confirm:$false } }
    ) {
        $failure = $null
        try { & $Run -ErrorAction Stop | Out-Null } catch { $failure = $_ }
        $failure | Should -Not -BeNullOrEmpty -Because "$Command must fail while smbd is down"
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable' -Because "$failure"
        Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId | Should -Be $catalogBefore
    }

    It 'works again, with nothing lost, once smbd is back' {
        Start-TestSmbShare | Out-Null
        (Get-VmCheckpoint -Repository $repo).Id | Sort-Object | Should -Be $known
        (Test-VmCheckpoint -Repository $repo).Status | Sort-Object -Unique | Should -Be 'Healthy'
        Get-CatalogIds $env:VMCHECKPOINT_CATALOG $repositoryId | Should -Be $known
    }

    It 'gives the same error for a repository path on the share that is gone' {
        $failure = $null
        try { Get-VmCheckpoint -Repository (Join-Path $smb.Path "$repoName-gone") -ErrorAction Stop | Out-Null } catch { $failure = $_ }
        $failure | Should -Not -BeNullOrEmpty
        $failure.CategoryInfo.Category | Should -Be 'ResourceUnavailable' -Because "$failure"
    }
}

Describe 'The same scenario in an encrypted repository on the share' {
    It 'loses nothing, reclaims, verifies, restores equal, and names no VM on the share' {
        $name = 'encrypted-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
        $backingFolder = Join-Path $smb.Backing $name
        Assert-EncryptedScenario -Work $work -Repository (Join-Path $smb.Path $name) -ObjectNames {
            Get-ChildItem $backingFolder -Recurse -File | ForEach-Object { $_.FullName.Substring($backingFolder.Length + 1) }
        }
    }
}
