BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $script:disk = New-TestImage -Path (Join-Path $work 'web.qcow2') -Size 64MB -Offsets 0, 5MB, 20MB, 63MB
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Invoke-VmCheckpoint -DiskPath' {
    It 'stores the data blocks of the image and outputs the checkpoint' {
        $c = Invoke-VmCheckpoint -Name web -DiskPath $disk -Repository $repo
        $c.VmName | Should -Be 'web'
        $c.Hypervisor | Should -Be 'Offline'
        $c.Disks.Name | Should -Be 'web'
        $c.VirtualSize | Should -Be 64MB
        $c.ReadBytes | Should -Be 4MB            # only the four written blocks are read: the rest is unallocated
        $c.StoredBytes | Should -BeGreaterThan 3MB  # random data does not compress
        $c.ParentId | Should -BeNullOrEmpty
    }

    It 'stores nothing new when nothing changed, and names its parent' {
        $first = Get-VmCheckpoint -Name web -Repository $repo | Select-Object -First 1
        $c = Invoke-VmCheckpoint -Name web -DiskPath $disk -Repository $repo
        $c.StoredBytes | Should -Be 0
        $c.ChangedBytes | Should -Be 0
        $c.ParentId | Should -Be $first.Id
    }

    It 'stores only the changed block after a write' {
        Write-TestData -Path $disk -Offsets (30MB + 4096) -Length 4096 -Seed 9
        $c = Invoke-VmCheckpoint -Name web -DiskPath $disk -Repository $repo
        $c.ChangedBytes | Should -Be 1MB
        $c.StoredBytes | Should -BeGreaterThan 0
        $c.StoredBytes | Should -BeLessOrEqual 1MB
    }

    It 'reads only the blocks written since the last checkpoint: the qcow2 keeps a persistent dirty bitmap' {
        Write-TestData -Path $disk -Offsets (40MB + 512), (50MB) -Length 4096 -Seed 10
        $copy = Join-Path $work 'web-now.qcow2'
        Copy-Item $disk $copy
        $c = Invoke-VmCheckpoint -Name web -DiskPath $disk -Repository $repo
        $c.ReadBytes | Should -Be 2MB            # two 1 MiB blocks of the 7 MiB of data
        $c.ChangedBytes | Should -Be 2MB
        $bitmaps = @((& qemu-img info -U --output=json $disk | ConvertFrom-Json).'format-specific'.data.bitmaps)
        $bitmaps.Count | Should -Be 1            # the bitmap of the checkpoint before is gone
        $bitmaps[0].name | Should -BeLike 'vmcheckpoint-*'
        $bitmaps[0].flags | Should -Be 'auto'
        $out = Join-Path $work 'tracked-restore'
        $c | Restore-VmCheckpoint -Destination $out -Repository $repo | Out-Null
        Test-SameImage (Join-Path $out 'web.qcow2') $copy | Should -BeTrue
        Remove-Item $copy, $out -Recurse -Force
    }

    It 'only reads the files with -NoChangeTracking, and reads every data block with -Full' {
        $plain = New-TestImage -Path (Join-Path $work 'plain.qcow2') -Size 16MB -Offsets 0, 9MB -Seed 12
        $hash = (Get-FileHash $plain).Hash
        Invoke-VmCheckpoint -Name plain -DiskPath $plain -Repository $repo -NoChangeTracking | Out-Null
        (Invoke-VmCheckpoint -Name plain -DiskPath $plain -Repository $repo -NoChangeTracking).ReadBytes | Should -Be 2MB
        (Get-FileHash $plain).Hash | Should -Be $hash
        (& qemu-img info -U --output=json $plain | ConvertFrom-Json).'format-specific'.data.bitmaps | Should -BeNullOrEmpty
        (Invoke-VmCheckpoint -Name web -DiskPath $disk -Repository $repo -Full).ReadBytes | Should -Be 7MB   # blocks 0, 5, 20, 30, 40, 50, 63
    }

    It 'deduplicates across VMs: a copy of the image stores nothing' {
        $copy = Join-Path $work 'copy.qcow2'
        Copy-Item $disk $copy
        $c = Invoke-VmCheckpoint -Name other -DiskPath $copy -Repository $repo
        $c.StoredBytes | Should -Be 0
    }

    It 'takes image files from the pipeline as the disks of one VM' {
        $a = New-TestImage -Path (Join-Path $work 'pipe-a.qcow2') -Size 8MB -Offsets 0 -Seed 3
        $b = New-TestImage -Path (Join-Path $work 'pipe-b.raw') -Size 8MB -Format raw -Offsets 1MB -Seed 4
        $c = Get-Item $a, $b | Invoke-VmCheckpoint -Name piped -Repository $repo
        @($c).Count | Should -Be 1
        $c.Disks.Name | Should -Be @('pipe-a', 'pipe-b')
    }

    It 'accepts hostile VM names: quotes, spaces, slashes, dots, unicode' {
        foreach ($name in @("it's a `"vm`" with spaces", '../../etc/passwd', 'C:\vm', 'ünïcödé 虚拟机', '*?[]')) {
            $c = Invoke-VmCheckpoint -Name $name -DiskPath $disk -Repository $repo
            $c.VmName | Should -Be $name
            (Get-VmCheckpoint -Repository $repo | Where-Object VmName -eq $name).Id | Should -Be $c.Id
        }
        Test-Path (Join-Path $work 'etc') | Should -BeFalse
    }

    It 'reads from $env:VMCHECKPOINT_REPOSITORY when -Repository is omitted' {
        $env:VMCHECKPOINT_REPOSITORY = $repo
        try { (Invoke-VmCheckpoint -Name envvm -DiskPath $disk).VmName | Should -Be 'envvm' }
        finally { $env:VMCHECKPOINT_REPOSITORY = $null }
    }

    It 'writes nothing with -WhatIf' {
        $before = Get-RepositoryFiles $repo
        Invoke-VmCheckpoint -Name whatif -DiskPath $disk -Repository $repo -WhatIf
        Get-RepositoryFiles $repo | Should -Be $before
    }

    It 'gives ObjectNotFound for a missing image and adds nothing' {
        $before = Get-RepositoryFiles $repo
        $e = { Invoke-VmCheckpoint -Name missing -DiskPath (Join-Path $work 'nope.qcow2') -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Get-RepositoryFiles $repo | Should -Be $before
        Get-VmCheckpoint -Name missing -Repository $repo -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'gives InvalidData naming the file for a corrupt image, and adds nothing to repository or catalog' {
        $bad = Join-Path $work 'bad.qcow2'
        Copy-Item $disk $bad
        # L1 table offset (header bytes 40..47) far past the end of the file.
        $fs = [IO.File]::OpenWrite($bad); $fs.Position = 40; $fs.Write([byte[]](0, 0, 0, 0x10, 0, 0, 0, 0), 0, 8); $fs.Dispose()
        $before = Get-RepositoryFiles $repo
        $count = @(Get-VmCheckpoint -Repository $repo).Count
        $hash = (Get-FileHash $bad).Hash
        $e = { Invoke-VmCheckpoint -Name bad -DiskPath $bad -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        (Get-FileHash $bad).Hash | Should -Be $hash   # not even a bitmap was added
        $e.CategoryInfo.Category | Should -Be 'InvalidData'
        $e.Exception.Message | Should -BeLike "*bad.qcow2*"
        Get-RepositoryFiles $repo | Should -Be $before
        @(Get-VmCheckpoint -Repository $repo).Count | Should -Be $count
        (Get-VmCheckpointJob -Name bad -Last 1).Result | Should -Be 'Failed'
    }

    It 'refuses two disks that would have the same name' {
        New-Item -ItemType Directory (Join-Path $work 'sub') | Out-Null
        $twin = Join-Path $work 'sub/web.qcow2'
        Copy-Item $disk $twin
        $e = { Invoke-VmCheckpoint -Name twins -DiskPath $disk, $twin -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
    }

    It 'gives ResourceUnavailable when the repository cannot be reached' {
        $e = { Invoke-VmCheckpoint -Name x -DiskPath $disk -Repository (Join-Path $work 'unmounted/share') -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
    }
}
