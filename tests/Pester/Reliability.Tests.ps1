# The reliability suite: faults a real host meets, at many instants, against real repositories.
#  - kill -9 of checkpoints and reclaims at random instants: no unreadable checkpoint, the next run works, no
#    completed checkpoint lost, a deleted catalog rebuilt, every byte still verifiable;
#  - a flipped byte in stored files of every kind (packs, index files, manifests, the configuration): all found;
#  - a full repository disk and a full restore destination (small tmpfs mounts): a clear error, nothing left
#    behind, the repository healthy, the next run working once there is room;
#  - two writers and a pruner at once, on a folder and on the SMB share: no block lost;
#  - hostile VM and disk names: nothing written outside the repository or the destination.
# In the ordinary test run the counts are small (CI time); `build.ps1 Reliability` sets VMCHECKPOINT_RELIABILITY_COUNT
# (120 by default) and VMCHECKPOINT_RELIABILITY_FIGURES, and writes what was measured into docs/figures.md.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:count = if ($env:VMCHECKPOINT_RELIABILITY_COUNT) { [int]$env:VMCHECKPOINT_RELIABILITY_COUNT } else { 0 }
    $script:kills = if ($count) { $count } else { 12 }
    $script:flips = if ($count) { $count } else { 40 }
    $script:figures = [ordered]@{}
    $script:rng = [Random]::new(20261204)

    # Random bytes written into an image at a random MiB-aligned offset: new data for the next checkpoint.
    function script:Write-NewData([string] $Image, [int] $MiB, [long] $Size) {
        $offset = [long]$rng.Next(0, [int](($Size - $MiB * 1MB) / 1MB)) * 1MB
        Write-TestData -Path $Image -Offsets $offset -Length ($MiB * 1MB) -Seed $rng.Next()
    }
    # Every checkpoint of the repository, as the repository itself lists them (not the catalog).
    function script:Get-StoredIds([string] $Repository) {
        @(Get-ChildItem (Join-Path $Repository 'checkpoints') -Recurse -File -Filter *.json -ErrorAction SilentlyContinue |
            ForEach-Object { $_.BaseName -replace '^.*_', '' } | Sort-Object)
    }
    # Files of the repository outside locks/ with their lengths (what a failed run must leave as it was).
    function script:Get-Snapshot([string] $Repository) { @(Get-RepositoryFiles $Repository) }
}
AfterAll {
    if ($env:VMCHECKPOINT_RELIABILITY_FIGURES) { $figures | ConvertTo-Json -Depth 4 | Set-Content $env:VMCHECKPOINT_RELIABILITY_FIGURES }
    foreach ($m in @(Join-Path $work 'full-repo'), @(Join-Path $work 'full-dest')) { & umount $m 2>$null }
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'kill -9 of checkpoints and reclaims at random instants' {
    It 'leaves no unreadable checkpoint, loses no completed one, and the next run works every time' {
        $repo = Join-Path $work 'kill-repo'
        New-VmCheckpointRepository -Path $repo | Out-Null
        $size = 128MB
        $image = New-TestImage -Path (Join-Path $work 'kill.qcow2') -Size $size -Offsets (0..23 | ForEach-Object { [long]$_ * 5MB }) -Seed 31
        $first = Invoke-VmCheckpoint -Name killvm -DiskPath $image -Repository $repo -NoChangeTracking
        $completed = [Collections.Generic.List[string]]::new(); $completed.Add($first.Id)
        $removable = [Collections.Generic.HashSet[string]]::new()
        # How long each kind of job runs here, measured once, so that the instants fall inside the jobs.
        Write-NewData $image 16 $size
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $completed.Add((Invoke-VmCheckpoint -Name killvm -DiskPath $image -Repository $repo -NoChangeTracking -Full).Id)
        $checkpointMs = [Math]::Max(200, $clock.ElapsedMilliseconds)
        $killedCheckpoints = 0; $killedReclaims = 0; $finishedBeforeKill = 0; $unhealthy = 0; $failedNext = 0; $lost = 0
        for ($i = 0; $i -lt $kills; $i++) {
            $reclaim = ($i % 3) -eq 2 -and $completed.Count -gt 3
            $marker = Join-Path $work "kill-$i.started"
            if ($reclaim) {
                # Removes the oldest checkpoint not yet removed, and reclaims its blocks.
                $victim = $completed | Where-Object { -not $removable.Contains($_) } | Select-Object -First 1
                [void]$removable.Add($victim)
                $job = "Remove-VmCheckpoint -Id '$victim' -Repository '$repo' -Confirm:`$false | Out-Null"
                $window = 1500
            }
            else {
                Write-NewData $image 16 $size
                $job = "Invoke-VmCheckpoint -Name killvm -DiskPath '$image' -Repository '$repo' -NoChangeTracking -Full | Out-Null"
                $window = [int]($checkpointMs * 1.3)
            }
            $p = Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work "kill-$i.out") -StdErr (Join-Path $work "kill-$i.err") -Script @"
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work 'kill-child.db')'
Set-Content '$marker' 1
$job
"@
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while (-not (Test-Path $marker) -and -not $p.HasExited -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 5 }
            Start-Sleep -Milliseconds $rng.Next(0, $window)
            if ($p.HasExited) { $finishedBeforeKill++ } else { & kill -9 $p.Id }
            $p.WaitForExit()
            if ($reclaim) { $killedReclaims++ } else { $killedCheckpoints++ }

            # Every checkpoint the repository lists reads (manifest, index, packs present).
            $verdicts = @(Test-VmCheckpoint -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable verifyErrors)
            if ($verifyErrors.Count -or @($verdicts | Where-Object Status -ne 'Healthy').Count) { $unhealthy++ }
            # No completed checkpoint is gone, but for the one a reclaim was asked to remove.
            $stored = Get-StoredIds $repo
            $lost += @($completed | Where-Object { -not $removable.Contains($_) -and $_ -notin $stored }).Count
            # The next run works, and completes.
            try {
                Write-NewData $image 4 $size
                $completed.Add((Invoke-VmCheckpoint -Name killvm -DiskPath $image -Repository $repo -NoChangeTracking -ErrorAction Stop).Id)
            }
            catch { $failedNext++; Write-Host "Run after kill $i failed: $_" }
        }
        Copy-Item $image (Join-Path $work 'kill-last.qcow2')

        # A deleted catalog is rebuilt with every checkpoint the repository holds.
        Remove-Item $env:VMCHECKPOINT_CATALOG
        $rebuilt = @(Get-VmCheckpoint -Name killvm -Repository $repo)
        $full = @(Test-VmCheckpoint -Repository $repo -ReadData)
        $restored = Restore-VmCheckpoint -Name killvm -Destination (Join-Path $work 'kill-restored') -Repository $repo
        $leftovers = @(Get-ChildItem $repo -Recurse -File | Where-Object { $_.Name -like '*.tmp' -or $_.DirectoryName -like '*locks*' }).Count

        $figures.Kills = [ordered]@{ Checkpoints = $killedCheckpoints; Reclaims = $killedReclaims; FinishedBeforeTheKill = $finishedBeforeKill
            CheckpointMs = $checkpointMs; Unreadable = $unhealthy; Lost = $lost; NextRunFailed = $failedNext
            Rebuilt = $rebuilt.Count; Stored = (Get-StoredIds $repo).Count; HealthyWithReadData = @($full | Where-Object Status -eq 'Healthy').Count; Leftovers = $leftovers }
        Write-Host "kill -9: $killedCheckpoints checkpoints and $killedReclaims reclaims killed ($finishedBeforeKill finished first); unreadable $unhealthy, lost $lost, next run failed $failedNext; catalog rebuilt with $($rebuilt.Count) of $((Get-StoredIds $repo).Count); temporary files and locks left: $leftovers"
        $unhealthy | Should -Be 0
        $lost | Should -Be 0
        $failedNext | Should -Be 0
        $rebuilt.Count | Should -Be (Get-StoredIds $repo).Count
        $full.Status | Sort-Object -Unique | Should -Be 'Healthy'
        Test-SameImage (Join-Path $work 'kill-last.qcow2') $restored.Path | Should -BeTrue
        @(Get-ChildItem (Join-Path $repo 'locks') -File).Count | Should -Be 0
    }
}

Describe 'A flipped byte in stored files of every kind' {
    It 'is found by Test-VmCheckpoint -ReadData every time' {
        $repo = Join-Path $work 'flip-repo'
        New-VmCheckpointRepository -Path $repo | Out-Null
        foreach ($vm in 'a', 'b') {
            $image = New-TestImage -Path (Join-Path $work "flip-$vm.qcow2") -Size 32MB -Offsets 0, 4MB, 9MB, 20MB -Seed ([int][char]$vm)
            Invoke-VmCheckpoint -Name "flip$vm" -DiskPath $image -Repository $repo | Out-Null
            Write-TestData -Path $image -Offsets 12MB -Seed 99
            Invoke-VmCheckpoint -Name "flip$vm" -DiskPath $image -Repository $repo | Out-Null
        }
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        $kinds = [ordered]@{
            pack     = @(Get-ChildItem (Join-Path $repo 'packs') -Recurse -File)
            index    = @(Get-ChildItem (Join-Path $repo 'index') -Recurse -File)
            manifest = @(Get-ChildItem (Join-Path $repo 'checkpoints') -Recurse -File)
            config   = @(Get-Item (Join-Path $repo 'vmcheckpoint-repository.json'))
        }
        $found = [ordered]@{}; $tried = [ordered]@{}
        foreach ($k in $kinds.Keys) { $found[$k] = 0; $tried[$k] = 0; $kinds[$k].Count | Should -BeGreaterThan 0 }
        $missed = [Collections.Generic.List[string]]::new()
        for ($i = 0; $i -lt $flips; $i++) {
            $kind = @($kinds.Keys)[$i % $kinds.Count]
            $file = $kinds[$kind][$rng.Next($kinds[$kind].Count)].FullName
            $bytes = [IO.File]::ReadAllBytes($file)
            $at = $rng.Next($bytes.Length)
            $was = $bytes[$at]
            $bytes[$at] = $was -bxor [byte]$rng.Next(1, 256)
            [IO.File]::WriteAllBytes($file, $bytes)
            try {
                $tried[$kind]++
                $refused = $false
                # A damaged configuration stops the verification at once (a terminating error): found as well.
                try { $verdicts = @(Test-VmCheckpoint -Repository $repo -ReadData -ErrorAction SilentlyContinue -ErrorVariable flipErrors) }
                catch { $refused = $true; $verdicts = @() }
                if ($refused -or $flipErrors.Count -or @($verdicts | Where-Object Status -ne 'Healthy').Count) { $found[$kind]++ }
                else { $missed.Add("$kind $file @$at") }
            }
            finally {
                $bytes[$at] = $was
                [IO.File]::WriteAllBytes($file, $bytes)
            }
        }
        $figures.Flips = [ordered]@{ Tried = $tried; Found = $found; Missed = @($missed) }
        Write-Host ("Flipped bytes found: " + (($kinds.Keys | ForEach-Object { "$_ $($found[$_]) of $($tried[$_])" }) -join ', '))
        $missed | Should -BeNullOrEmpty
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
    }
}

Describe 'A full disk' {
    BeforeAll {
        $script:fullRepo = Join-Path $work 'full-repo'
        $script:fullDest = Join-Path $work 'full-dest'
        New-Item -ItemType Directory $fullRepo, $fullDest | Out-Null
        & mount -t tmpfs -o size=24m vmckpt-full-repo $fullRepo
        if ($LASTEXITCODE) { throw "mount tmpfs $fullRepo failed" }
        & mount -t tmpfs -o size=8m vmckpt-full-dest $fullDest
        if ($LASTEXITCODE) { throw "mount tmpfs $fullDest failed" }
        # 48 MiB of random data: more than the repository's 24 MiB can hold, compressed or not.
        $script:bigImage = New-TestImage -Path (Join-Path $work 'full.qcow2') -Size 64MB -Offsets (0..47 | ForEach-Object { [long]$_ * 1MB }) -Seed 41
        $script:smallImage = New-TestImage -Path (Join-Path $work 'small.qcow2') -Size 64MB -Offsets 0, 1MB -Seed 42
    }

    It 'in the repository: a clear error, nothing left behind, the repository healthy, and the next run works once there is room' {
        $repo = Join-Path $fullRepo 'repo'
        New-VmCheckpointRepository -Path $repo | Out-Null
        $small = Invoke-VmCheckpoint -Name full -DiskPath $smallImage -Repository $repo
        $before = Get-Snapshot $repo
        $catalogBefore = @(Get-VmCheckpoint -Repository $repo).Id
        $e = { Invoke-VmCheckpoint -Name full -DiskPath $bigImage -Repository $repo -ErrorAction Stop } | Should -Throw -PassThru
        $e.Exception.Message | Should -Match 'space'
        $e.CategoryInfo.Category | Should -Not -Be 'NotSpecified'
        Get-Snapshot $repo | Should -Be $before
        @(Get-VmCheckpoint -Repository $repo).Id | Should -Be $catalogBefore
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Should -Be 'Healthy'
        (Get-VmCheckpointJob -Name full -Last 1).Result | Should -Be 'Failed'
        & mount -o remount,size=160m $fullRepo
        $big = Invoke-VmCheckpoint -Name full -DiskPath $bigImage -Repository $repo
        $big.ParentId | Should -Be $small.Id
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        $script:fullRepoPath = $repo
        $script:figures.FullDisk = [ordered]@{ RepositoryError = $e.Exception.Message; Category = "$($e.CategoryInfo.Category)" }
    }

    It 'at the restore destination: a clear error, no partial file, and the restore works once there is room' {
        $dest = Join-Path $fullDest 'restored'
        $e = { Restore-VmCheckpoint -Name full -Destination $dest -DiskFormat raw -Repository $fullRepoPath -ErrorAction Stop } | Should -Throw -PassThru
        $e.Exception.Message | Should -Match 'space'
        @(Get-ChildItem $fullDest -Recurse -File).Count | Should -Be 0
        & mount -o remount,size=160m $fullDest
        $r = Restore-VmCheckpoint -Name full -Destination $dest -DiskFormat raw -Repository $fullRepoPath
        Test-SameImage $bigImage $r.Path | Should -BeTrue
        $script:figures.FullDisk.DestinationError = $e.Exception.Message
    }
}

Describe 'Two writers and a pruner at once' {
    BeforeDiscovery {
        $script:places = @(@{ Place = 'folder' }, @{ Place = 'SMB share' })
    }

    It 'on a <Place>: every run succeeds and no block is lost' -ForEach $places {
        if ($Place -eq 'folder') { $repo = Join-Path $work 'busy-repo' }
        else {
            $smb = Start-TestSmbShare
            $repo = Join-Path $smb.Path ('busy-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
        }
        try {
            New-VmCheckpointRepository -Path $repo | Out-Null
            $vms = 'w1', 'w2'
            $images = @{}
            foreach ($vm in $vms) {
                $images[$vm] = New-TestImage -Path (Join-Path $work "busy-$vm-$($Place -replace ' ', '').qcow2") -Size 32MB -Offsets 0, 6MB, 13MB -Seed ($vm.GetHashCode() -band 0xffff)
                Invoke-VmCheckpoint -Name $vm -DiskPath $images[$vm] -Repository $repo | Out-Null
            }
            $runs = if ($count) { 6 } else { 3 }
            $children = @(foreach ($vm in $vms) {
                $writes = (1..$runs | ForEach-Object { "& qemu-io -f qcow2 -c 'write -q -P $_ $($_ * 2)M 1M' '$($images[$vm])' | Out-Null; Invoke-VmCheckpoint -Name '$vm' -DiskPath '$($images[$vm])' -Repository '$repo' | Out-Null" }) -join "`n"
                Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work "busy-$vm.out") -StdErr (Join-Path $work "busy-$vm.err") -Script @"
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work "busy-$vm.db")'
$writes
"@
            })
            $children += Start-PwshScript -WorkingDirectory $work -StdOut (Join-Path $work 'busy-pruner.out') -StdErr (Join-Path $work 'busy-pruner.err') -Script @"
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $work 'busy-pruner.db')'
foreach (`$i in 1..$runs) { Remove-VmCheckpoint -KeepLast 1 -Repository '$repo' -Confirm:`$false | Out-Null; Start-Sleep -Milliseconds 300 }
"@
            foreach ($c in $children) { $c.WaitForExit(); $c.ExitCode | Should -Be 0 -Because ((Get-Content (Join-Path $work 'busy-*.err') -Raw) -join ' ') }
            $verdicts = @(Test-VmCheckpoint -Repository $repo -ReadData)
            $verdicts.Status | Sort-Object -Unique | Should -Be 'Healthy'
            foreach ($vm in $vms) {
                $r = Restore-VmCheckpoint -Name $vm -Destination (Join-Path $work "busy-restored-$vm-$($Place -replace ' ', '')") -Repository $repo
                Test-SameImage $images[$vm] $r.Path | Should -BeTrue -Because "$vm's latest checkpoint holds its last write"
            }
            $figures["Busy $Place"] = [ordered]@{ Writers = 2; RunsEach = $runs; PrunerRuns = $runs; Checkpoints = $verdicts.Count; Damaged = @($verdicts | Where-Object Status -ne 'Healthy').Count }
        }
        finally { if ($Place -ne 'folder') { Remove-Item $repo -Recurse -Force -ErrorAction SilentlyContinue } }
    }
}

Describe 'Hostile VM and disk names' {
    It 'writes nothing outside the repository or the destination, whatever the names' {
        $root = Join-Path $work 'hostile'
        $repo = Join-Path $root 'repo'
        $dest = Join-Path $root 'dest'
        $sources = Join-Path $root 'sources'
        New-Item -ItemType Directory $sources | Out-Null
        New-VmCheckpointRepository -Path $repo | Out-Null
        $vmNames = @('../../escape-vm', '..', '.', 'a/b', 'a\b', '/abs-escape', "new`nline", "tab`tname", ' lead', 'trail ', '-dash', '*', '?', 'con',
                     'ünïcødé-名前', ('w' * 300), "quote'name", 'dollar$(touch escape-cmd)', '`backtick', '%2e%2e%2fescape')
        $diskNames = @('..escape.qcow2', 'with space.qcow2', "new`nline.qcow2", '-dash.qcow2', "quote'.qcow2", 'dollar$(touch escape-disk).qcow2', 'ünï.qcow2', '[x].qcow2')
        $disks = foreach ($d in $diskNames) {
            $path = Join-Path $sources $d
            New-TestImage -Path (Join-Path $sources 'plain.qcow2') -Size 4MB -Offsets 0 -Seed 51 | Out-Null
            Move-Item -LiteralPath (Join-Path $sources 'plain.qcow2') -Destination $path
            $path
        }
        $outside = { @(Get-ChildItem $work -Recurse -Force | Where-Object { $_.FullName -notlike "$repo*" -and $_.FullName -notlike "$dest*" -and $_.FullName -notlike "$sources*" } | ForEach-Object FullName | Sort-Object) }
        $aboveWork = { @(Get-ChildItem (Split-Path $work) -Force | Where-Object Name -like '*escape*' | ForEach-Object FullName) }
        $before = & $outside
        $beforeAbove = & $aboveWork
        $plain = Join-Path $sources 'plain-disk.qcow2'
        New-TestImage -Path $plain -Size 4MB -Offsets 0 -Seed 52 | Out-Null
        # Each hostile VM name with a plain disk, then each hostile disk name under a plain VM name.
        $trials = @($vmNames | ForEach-Object { @{ Vm = $_; Disk = $plain } }) + @($disks | ForEach-Object -Begin { $n = 0 } -Process { $n++; @{ Vm = "hostile-disk-$n"; Disk = $_ } })
        $stored = 0; $refused = 0; $wrongCategory = [Collections.Generic.List[string]]::new()
        foreach ($t in $trials) {
            $c = $null
            try { $c = Invoke-VmCheckpoint -Name $t.Vm -LiteralPath $t.Disk -Repository $repo -ErrorAction Stop }
            catch {
                $refused++
                if ($_.CategoryInfo.Category -notin 'InvalidArgument', 'InvalidData') { $wrongCategory.Add("$($t.Vm) / $($t.Disk): $($_.CategoryInfo.Category) $_") }
                continue
            }
            $stored++
            $r = @($c | Restore-VmCheckpoint -Destination (Join-Path $dest ([guid]::NewGuid().ToString('N'))) -Repository $repo -ErrorAction Stop)
            $r.Count | Should -Be 1
            $r[0].Path | Should -BeLike "$dest*"
            Test-SameImage $t.Disk $r[0].Path | Should -BeTrue
        }
        $after = & $outside
        $afterAbove = & $aboveWork
        $figures.HostileNames = [ordered]@{ VmNames = $vmNames.Count; DiskNames = $diskNames.Count; Stored = $stored; Refused = $refused; WrittenOutside = @($after | Where-Object { $_ -notin $before }).Count }
        Write-Host "Hostile names: $($trials.Count) tried ($($vmNames.Count) VM names, $($diskNames.Count) disk names): $stored stored and restored inside the destination, $refused refused"
        $wrongCategory | Should -BeNullOrEmpty
        $after | Should -Be $before
        $afterAbove | Should -Be $beforeAbove
        @(Get-ChildItem $root -Recurse -Force -Filter '*escape-cmd*').Count + @(Get-ChildItem $root -Recurse -Force -Filter 'escape-disk').Count | Should -Be 0
        (Test-VmCheckpoint -Repository $repo -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        $stored | Should -BeGreaterThan 5
    }
}
