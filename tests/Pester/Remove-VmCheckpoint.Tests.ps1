BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    function script:New-History([string] $Name, [int] $Count) {
        $repo = Join-Path $work $Name
        New-VmCheckpointRepository -Path $repo | Out-Null
        $disk = New-TestImage -Path (Join-Path $work "$Name.qcow2") -Size 32MB -Offsets 0
        $ids = foreach ($i in 1..$Count) {
            # Each checkpoint rewrites four blocks, so old blocks become garbage when old checkpoints go.
            Write-TestData -Path $disk -Offsets (1MB * $i), (8MB + 1MB * $i), 20MB, 21MB -Seed (10 * $i)
            Copy-Item $disk (Join-Path $work "$Name-$i.qcow2")
            (Invoke-VmCheckpoint -Name $Name -DiskPath $disk -Repository $repo).Id
        }
        [pscustomobject]@{ Repository = $repo; Ids = @($ids) }
    }
    function script:Get-Size([string] $Path) { (Get-ChildItem $Path -Recurse -File | Measure-Object Length -Sum).Sum }
}
AfterAll { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }

Describe 'Remove-VmCheckpoint' {
    It 'removes piped checkpoints, reclaims their blocks, and the rest still restore' {
        $h = New-History -Name piped -Count 4
        $before = Get-Size $h.Repository
        $result = Get-VmCheckpoint -Repository $h.Repository | Select-Object -Skip 2 | Remove-VmCheckpoint -Confirm:$false
        $result.RemovedIds | Sort-Object | Should -Be (@($h.Ids[0], $h.Ids[1]) | Sort-Object)
        $result.Reclaim.Completed | Should -BeTrue
        $result.Reclaim.BytesReclaimed | Should -BeGreaterThan 0
        Get-Size $h.Repository | Should -BeLessThan $before
        (Get-VmCheckpoint -Repository $h.Repository).Id | Should -Be @($h.Ids[3], $h.Ids[2])
        (Test-VmCheckpoint -Repository $h.Repository -ReadData).Status | Should -Be @('Healthy', 'Healthy')
        foreach ($i in 3, 4) {
            $dest = Join-Path $work "piped-restore-$i"
            Restore-VmCheckpoint -Name piped -Id $h.Ids[$i - 1] -Destination $dest -Repository $h.Repository | Out-Null
            Test-SameImage (Join-Path $work "piped-$i.qcow2") (Join-Path $dest 'piped.qcow2') | Should -BeTrue
        }
    }

    It 'applies a retention policy per VM' {
        $h = New-History -Name policy -Count 4
        $result = Remove-VmCheckpoint -Name policy -KeepLast 1 -Repository $h.Repository -Confirm:$false
        $result.RemovedIds.Count | Should -Be 3
        (Get-VmCheckpoint -Repository $h.Repository).Id | Should -Be $h.Ids[3]
        # All four were taken today: -KeepDaily 1 keeps only the newest.
        (Remove-VmCheckpoint -KeepDaily 1 -Repository $h.Repository -Confirm:$false).RemovedIds.Count | Should -Be 0
    }

    It 'removes nothing with -WhatIf' {
        $h = New-History -Name whatif -Count 2
        $files = Get-RepositoryFiles $h.Repository
        Remove-VmCheckpoint -KeepLast 1 -Repository $h.Repository -WhatIf
        Get-VmCheckpoint -Id $h.Ids[0] -Repository $h.Repository | Remove-VmCheckpoint -WhatIf
        Get-RepositoryFiles $h.Repository | Should -Be $files
    }

    It 'needs a policy or ids' {
        $h = New-History -Name nopolicy -Count 1
        $e = { Remove-VmCheckpoint -Name nopolicy -Repository $h.Repository -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $e = { Remove-VmCheckpoint -Id 'abcdabcdabcdabcd' -Repository $h.Repository -Confirm:$false -ErrorAction Stop } | Should -Throw -PassThru
        $e.CategoryInfo.Category | Should -Be 'ObjectNotFound'
        @(Get-VmCheckpoint -Repository $h.Repository).Count | Should -Be 1
    }

    It 'defers reclaiming while another live process holds the repository, deleting no block' {
        $h = New-History -Name locked -Count 3
        # A checkpoint running in another process: a shared lock held by a live pwsh (this one's child).
        $holder = Start-PwshScript -WorkingDirectory $work -Script "Start-Sleep 60"
        try {
            $lock = @{ kind = 'shared'; host = [Environment]::MachineName; pid = $holder.Id
                       processStart = $holder.StartTime.ToUniversalTime().ToString('o'); time = [DateTime]::UtcNow.ToString('o') } | ConvertTo-Json
            Set-Content (Join-Path $h.Repository 'locks/0123456789abcdef0123456789abcdef.lock') $lock
            $packs = Get-ChildItem (Join-Path $h.Repository 'packs') -Recurse -File | ForEach-Object Name | Sort-Object
            $result = Remove-VmCheckpoint -Id $h.Ids[0] -Repository $h.Repository -LockTimeout 1 -Confirm:$false -WarningVariable warned -WarningAction SilentlyContinue
            $result.RemovedIds | Should -Be $h.Ids[0]
            $result.Reclaim.Completed | Should -BeFalse
            "$warned" | Should -BeLike "*process $($holder.Id)*"
            Get-ChildItem (Join-Path $h.Repository 'packs') -Recurse -File | ForEach-Object Name | Sort-Object | Should -Be $packs
        }
        finally {
            Stop-Process -Id $holder.Id -Force -ErrorAction SilentlyContinue
            $holder.WaitForExit()
        }
        # Its holder gone, the lock is stale: the next removal reclaims.
        (Remove-VmCheckpoint -Id $h.Ids[1] -Repository $h.Repository -LockTimeout 1 -Confirm:$false).Reclaim.Completed | Should -BeTrue
        (Test-VmCheckpoint -Repository $h.Repository -ReadData).Status | Should -Be 'Healthy'
    }
}
