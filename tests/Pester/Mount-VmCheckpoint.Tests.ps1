# Mount-VmCheckpoint / Dismount-VmCheckpoint on real images: a GPT disk with two ext4 partitions and an MBR disk with XFS
# (and a logical partition), checkpointed, mounted through the export server, nbdfuse and loop devices.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestHelpers.psm1') -Force
    Import-Module (Get-TestModulePath) -Force
    $script:work = New-TestFolder
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $script:repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null

    # Makes a file system on [offset, offset+size) of an image through a loop device and fills it from a folder.
    function New-TestFileSystem([string] $Image, [long] $Offset, [long] $Size, [string] $Type, [hashtable] $Files) {
        $loop = (& losetup -f --show -o $Offset --sizelimit $Size $Image).Trim()
        try {
            if ($Type -eq 'xfs') { & mkfs.xfs -q -f $loop | Out-Null } else { & mkfs.ext4 -q -F $loop | Out-Null }
            if ($LASTEXITCODE -ne 0) { throw "mkfs $Type failed" }
            $mnt = Join-Path $work ("fill-" + [guid]::NewGuid().ToString('N'))
            New-Item -ItemType Directory $mnt | Out-Null
            & mount $loop $mnt; if ($LASTEXITCODE -ne 0) { throw "mount $loop failed" }
            try {
                foreach ($name in $Files.Keys) {
                    $target = Join-Path $mnt $name
                    New-Item -ItemType Directory (Split-Path $target) -Force | Out-Null
                    [IO.File]::WriteAllBytes($target, $Files[$name])
                }
            } finally { & umount $mnt; Remove-Item $mnt }
        } finally { & losetup -d $loop }
    }

    $rng = [Random]::new(5)
    $script:big = [byte[]]::new(3MB); $rng.NextBytes($big)
    $script:small = [Text.Encoding]::UTF8.GetBytes("hello from the checkpoint`n")
    $script:xfsFile = [byte[]]::new(700KB); $rng.NextBytes($xfsFile)

    # GPT: two ext4 partitions.
    $script:gpt = Join-Path $work 'gpt.raw'
    & truncate -s 64M $gpt
    "label: gpt`nstart=2048, size=40960, type=linux`nstart=43008, size=40960, type=linux`n" | & sfdisk -q $gpt | Out-Null
    New-TestFileSystem $gpt (2048 * 512) (40960 * 512) ext4 @{ 'etc/motd' = $small; 'data/big.bin' = $big }
    New-TestFileSystem $gpt (43008 * 512) (40960 * 512) ext4 @{ 'second.txt' = $small }
    # MBR: XFS in a primary partition, ext4 in a logical one.
    $script:mbr = Join-Path $work 'mbr.raw'
    & truncate -s 400M $mbr
    "label: dos`nstart=2048, size=614400, type=83`nstart=618496, size=200000, type=5`nstart=620544, size=100000, type=83`n" | & sfdisk -q $mbr | Out-Null
    New-TestFileSystem $mbr (2048 * 512) (614400 * 512) xfs @{ 'x/file.bin' = $xfsFile }
    New-TestFileSystem $mbr (620544 * 512) (100000 * 512) ext4 @{ 'logical.txt' = $small }

    $script:cp = Invoke-VmCheckpoint -Name inst-files -DiskPath $gpt, $mbr -Repository $repo
    # Changed after the checkpoint: the mount must show the checkpoint, not today's disk.
    New-TestFileSystem $gpt (43008 * 512) (40960 * 512) ext4 @{ 'later.txt' = $small }

    # Should -Be compares arrays element by element through the pipeline: far too slow for megabytes.
    function Test-SameBytes([byte[]] $A, [byte[]] $B) { [Linq.Enumerable]::SequenceEqual($A, $B) }

    function Get-Leftovers([string] $Under) {
        @(
            Get-Content /proc/self/mounts | Where-Object { $_ -match [regex]::Escape($Under) -or $_ -match 'nbdfuse' }
            & losetup -a | Where-Object { $_ -match 'gpt.raw|mbr.raw|/exports/|/mounts/' -or $_ -match '\(/(run|tmp)/vmcheckpoint' }
            Get-Process | Where-Object { $_.ProcessName -eq 'nbdfuse' -or ($_.CommandLine -match 'VmCheckpoint.Serve') }
        )
    }
}
AfterAll {
    foreach ($p in (Get-ChildItem $work -Directory -Filter 'mnt*' -ErrorAction SilentlyContinue)) { Dismount-VmCheckpoint -Path $p.FullName -ErrorAction SilentlyContinue }
    Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Mount-VmCheckpoint' {
    It 'mounts every file system of GPT and MBR disks read-only, files equal to the checkpoint' {
        $mnt = Join-Path $work 'mnt'
        $fs = Mount-VmCheckpoint -Name inst-files -Path $mnt -Repository $repo
        ($fs | ForEach-Object { "$($_.DiskName)-$($_.Partition)-$($_.FileSystem)" } | Sort-Object) |
            Should -Be @('gpt-1-ext4', 'gpt-2-ext4', 'mbr-1-xfs', 'mbr-5-ext4')
        $fs.CheckpointId | Select-Object -Unique | Should -Be $cp.Id
        Copy-Item (Join-Path $mnt 'gpt-part1/data/big.bin') (Join-Path $work 'big.copy')
        Test-SameBytes ([IO.File]::ReadAllBytes((Join-Path $work 'big.copy'))) $big | Should -BeTrue
        Get-Content -Raw (Join-Path $mnt 'gpt-part1/etc/motd') | Should -Be "hello from the checkpoint`n"
        Test-SameBytes ([IO.File]::ReadAllBytes((Join-Path $mnt 'mbr-part1/x/file.bin'))) $xfsFile | Should -BeTrue
        Test-Path (Join-Path $mnt 'mbr-part5/logical.txt') | Should -BeTrue
        Test-Path (Join-Path $mnt 'gpt-part2/second.txt') | Should -BeTrue
        Test-Path (Join-Path $mnt 'gpt-part2/later.txt') | Should -BeFalse
        { Set-Content (Join-Path $mnt 'gpt-part1/new.txt') 'x' -ErrorAction Stop } | Should -Throw
        Get-Content /proc/self/mounts | Where-Object { $_ -match [regex]::Escape("$mnt/") } | ForEach-Object { ($_ -split ' ')[3] } |
            ForEach-Object { $_ -split ',' | Select-Object -First 1 } | Select-Object -Unique | Should -Be 'ro'

        $fs | Dismount-VmCheckpoint
        Test-Path $mnt | Should -BeFalse
        Get-Leftovers $mnt | Should -BeNullOrEmpty
    }

    It 'mounts one disk with -DiskName, and refuses a folder already mounted or not empty' {
        $mnt = Join-Path $work 'mnt-one'
        $fs = Mount-VmCheckpoint -Name inst-files -Id $cp.Id -DiskName mbr -Path $mnt -Repository $repo
        $fs.DiskName | Select-Object -Unique | Should -Be 'mbr'
        { Mount-VmCheckpoint -Name inst-files -Path $mnt -Repository $repo -ErrorAction Stop } | Should -Throw -ErrorId 'Mount.TargetExists*'
        Dismount-VmCheckpoint -Path $mnt
        Get-Leftovers $mnt | Should -BeNullOrEmpty
        { Dismount-VmCheckpoint -Path $mnt -ErrorAction Stop } | Should -Throw -ErrorId 'Dismount.NotFound*'
    }

    It 'serves exports whose bytes equal the checkpoint (qemu-img compare over nbd+unix)' {
        $mnt = Join-Path $work 'mnt-compare'
        $fs = Mount-VmCheckpoint -Name inst-files -DiskName gpt -Path $mnt -Repository $repo
        $uri = Get-ChildItem /run/vmcheckpoint/exports -Directory | ForEach-Object { Join-Path $_.FullName 'server.json' } |
            Where-Object { Test-Path $_ } | ForEach-Object { Get-Content -Raw $_ | ConvertFrom-Json } |
            Where-Object CheckpointId -eq $cp.Id | ForEach-Object { $_.Disks } | Where-Object Name -eq gpt | Select-Object -First 1 -ExpandProperty Uri
        $uri | Should -Match '^nbd\+unix:///gpt\?socket='
        $restored = Restore-VmCheckpoint -Name inst-files -DiskName gpt -Destination (Join-Path $work 'restored') -DiskFormat raw -Repository $repo
        & qemu-img compare -f raw -F raw $restored.Path $uri | Out-Null
        $LASTEXITCODE | Should -Be 0
        Dismount-VmCheckpoint -Path $mnt
    }

    It 'fails reads loudly when its export server dies, and Dismount-VmCheckpoint still removes everything' {
        $mnt = Join-Path $work 'mnt-killed'
        Mount-VmCheckpoint -Name inst-files -DiskName gpt -Path $mnt -Repository $repo | Out-Null
        $server = Get-ChildItem /run/vmcheckpoint/exports -Directory | ForEach-Object { Join-Path $_.FullName 'server.json' } |
            Where-Object { Test-Path $_ } | ForEach-Object { Get-Content -Raw $_ | ConvertFrom-Json } |
            Where-Object { $_.CheckpointId -eq $cp.Id -and $_.Purpose -eq 'Mount' } | Sort-Object StartTime | Select-Object -Last 1
        @($server.Disks.Name) | Should -Be 'gpt' -Because 'the server of this mount serves its one disk'
        $uri = ($server.Disks | Where-Object Name -eq gpt).Uri
        & kill -9 $server.ProcessId
        # The mount's open NBD connection (nbdfuse's) is cut: a read that is not in the page cache fails, never gives
        # other bytes. A new client (qemu's own, as a VM's overlay has) is refused.
        & sh -c "echo 3 > /proc/sys/vm/drop_caches" 2>$null
        $read = $null
        $failed = $false
        try { $read = [IO.File]::ReadAllBytes((Join-Path $mnt 'gpt-part1/data/big.bin')) } catch { $failed = $true }
        if (-not $failed) { Test-SameBytes $read $big | Should -BeTrue }
        $failed | Should -BeTrue
        & qemu-img info $uri 2>&1 | Out-Null
        $LASTEXITCODE | Should -Not -Be 0
        Dismount-VmCheckpoint -Path $mnt
        Get-Leftovers $mnt | Should -BeNullOrEmpty
        Test-Path $server.Folder | Should -BeFalse
    }

    It 'fails reads of a damaged block instead of returning wrong bytes' {
        # A checkpoint of its own, so that no other test sees the damage.
        $img = Join-Path $work 'solo.raw'
        & truncate -s 16M $img
        New-TestFileSystem $img 0 16MB ext4 @{ 'f.bin' = $big }
        $damagedRepo = Join-Path $work 'repo-damaged'
        New-VmCheckpointRepository -Path $damagedRepo | Out-Null
        $solo = Invoke-VmCheckpoint -Name inst-solo -DiskPath $img -Repository $damagedRepo
        $mnt = Join-Path $work 'mnt-damaged'
        Mount-VmCheckpoint -Name inst-solo -Path $mnt -Repository $damagedRepo | Out-Null
        try {
            # Flip a byte in the middle of every pack: blocks not read yet (f.bin's data) are then damaged.
            foreach ($pack in Get-ChildItem (Join-Path $damagedRepo 'packs') -Recurse -Filter *.pack) {
                $bytes = [IO.File]::ReadAllBytes($pack.FullName); $bytes[[int]($bytes.Length / 2)] = $bytes[[int]($bytes.Length / 2)] -bxor 0x40
                [IO.File]::WriteAllBytes($pack.FullName, $bytes)
            }
            & sh -c "echo 3 > /proc/sys/vm/drop_caches" 2>$null
            $read = $null
            $failed = $false
            try { $read = [IO.File]::ReadAllBytes((Join-Path $mnt 'solo/f.bin')) } catch { $failed = $true }
            if (-not $failed) { Test-SameBytes $read $big | Should -BeTrue } # never other bytes
            $failed | Should -BeTrue
        } finally { Dismount-VmCheckpoint -Path $mnt }
        Get-Leftovers $mnt | Should -BeNullOrEmpty
    }
}
