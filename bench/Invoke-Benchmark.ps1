#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Times VmCheckpoint against borg (lz4), restic and rdiff-backup on one disk image.
.DESCRIPTION
    Builds one qcow2 image (VirtualGiB virtual, DataGiB of real data taken from a tar of /usr, written in a few
    regions spread over the disk, the rest never written), then, in one run, for every tool:
      full         the first backup of the image
      incremental  the next backup, after ChangeCount scattered 1 MiB writes of random data into the image
      restore      a restore of the latest backup into an empty folder, then checked against the image
    Every step is one whole process, measured by /usr/bin/time (elapsed seconds and peak RSS). VmCheckpoint runs
    as a fresh PowerShell process that imports the module and calls one cmdlet, so that, like the peers, its
    start-up is part of its time. Before the full and the incremental steps the image is read once, so that a
    virtual machine's host caches it alike for every tool (the first reader of a fresh file would otherwise pay the
    host's cold read alone). The page cache is dropped before every step (when the script may) so that no
    tool reads what an earlier one left in memory.

    Prints a table per step with each tool's seconds and peak memory and VmCheckpoint's ratio to each peer, the
    repository sizes after the incremental, and one PASS/MISS line per target of the issue:
      full and incremental in at most half of borg's time, restore in at most half of borg's time,
      repository no larger than restic's, VmCheckpoint's peak memory under 300 MB.
    Also writes all results as JSON (next to the work folder, or to -OutFile).

    Exit code: 0 when every tool ran and every restore was correct, whether targets were met or not (this is a
    measurement); 1 when a tool failed or a restore differed from the image.

    Needs Linux (Debian packages borgbackup, restic, rdiff-backup, qemu-utils and time are installed when missing
    and the script runs as root) and free disk space of about 6 x DataGiB + 1 GiB in the work folder's file system.
.PARAMETER ModulePath
    The built module folder (out/VmCheckpoint).
.PARAMETER VirtualGiB
    The image's virtual size.
.PARAMETER DataGiB
    How much real data the image holds.
.PARAMETER WorkPath
    A folder that does not exist yet or is empty; default: a new folder under /var/tmp. Removed at the end unless -Keep.
.PARAMETER OutFile
    Where to write the JSON results; default: <work folder>.json.
.PARAMETER Peer
    The peers to run (all by default). VmCheckpoint always runs.
.PARAMETER ChangeCount
    How many scattered 1 MiB writes come between the full and the incremental backup.
.PARAMETER Seed
    Seed of the change offsets and contents, so that runs are comparable.
.PARAMETER FormatRounds
    How many full checkpoints of each format (the qcow2 and a VHDX copy of it) the format comparison runs, in ABBA order;
    their medians are compared.
.PARAMETER Keep
    Keep the work folder (image, repositories, logs).
.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-Benchmark.ps1 -ModulePath out/VmCheckpoint -VirtualGiB 8 -DataGiB 3
.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-Benchmark.ps1 -ModulePath out/VmCheckpoint -VirtualGiB 1 -DataGiB 0.25 -Peer borg -Keep
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [string] $ModulePath,

    [ValidateRange(0.01, 65536)]
    [double] $VirtualGiB = 8,

    [ValidateRange(0.01, 65536)]
    [double] $DataGiB = 3,

    [string] $WorkPath,

    [string] $OutFile,

    [ValidateSet('borg', 'restic', 'rdiff-backup')]
    [string[]] $Peer = @('borg', 'restic', 'rdiff-backup'),

    [ValidateRange(1, 100000)]
    [int] $ChangeCount = 80,

    [int] $Seed = 20240601,

    # Full checkpoints of each format (qcow2, VHDX) for the format comparison, run in ABBA order.
    [ValidateRange(1, 20)]
    [int] $FormatRounds = 4,

    [switch] $Keep
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0

$MiB = 1MB
$GiB = 1GB
$Invariant = [cultureinfo]::InvariantCulture
$VmName = 'bench'
$DiskFileName = 'disk.qcow2'
# The memory target is written in MB; checked in bytes (300 MB = 286.1 MiB) so that it is not read generously.
$MemoryLimitBytes = 300 * 1000 * 1000

#region Helpers

# n/a for what was not measured (a peer not run, or failed)
function Format-Number($Value, [string] $Format = '0.00', [double] $Scale = 1) {
    if ($null -eq $Value) { return 'n/a' }
    ([double]$Value / $Scale).ToString($Format, $Invariant)
}

function Write-Section([string] $Title) { Write-Host ''; Write-Host "== $Title ==" }

function Test-Command([string] $Name) { [bool](Get-Command $Name -CommandType Application -ErrorAction SilentlyContinue) }

# Runs a native command that is set-up, not measured; its output is shown only when it fails.
function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    $output = & $File @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) {
        throw "$File $($Arguments -join ' ') failed with exit code ${LASTEXITCODE}:`n$($output -join "`n")"
    }
    $output
}

function Install-Prerequisite {
    # command => Debian package that provides it
    $needed = [ordered]@{
        'borg' = 'borgbackup'; 'restic' = 'restic'; 'rdiff-backup' = 'rdiff-backup'
        'qemu-img' = 'qemu-utils'; 'qemu-io' = 'qemu-utils'; '/usr/bin/time' = 'time'; 'du' = 'coreutils'; 'cmp' = 'diffutils'; 'tar' = 'tar'; 'zstd' = 'zstd'; 'openssl' = 'openssl'
    }
    $missing = @($needed.Keys | Where-Object { -not (Test-Command $_) })
    if ($missing.Count -eq 0) { return }
    $packages = @($missing | ForEach-Object { $needed[$_] } | Select-Object -Unique)
    if (-not (Test-Path /etc/debian_version) -or (& id -u) -ne '0') {
        throw "Missing $($missing -join ', '): install the packages $($packages -join ', ') (as root on Debian this script does it)."
    }
    Write-Host "Installing Debian packages: $($packages -join ' ')"
    $env:DEBIAN_FRONTEND = 'noninteractive'
    Invoke-Native apt-get @('update', '-qq') | Out-Null
    Invoke-Native apt-get (@('install', '-y', '-qq', '--no-install-recommends') + $packages) | Out-Null
}

# The command line that starts a fresh PowerShell like the one running this script: the pwsh of a dotnet local tool
# runs as "dotnet pwsh.dll", a regular install as its own executable.
function Get-PwshCommand {
    $process = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($process) -eq 'dotnet') {
        return @($process, (Join-Path $PSHOME 'pwsh.dll'))
    }
    @($process)
}

function ConvertTo-PSLiteral([string] $Text) { "'" + ($Text -replace "'", "''") + "'" }

# Drops the page cache so that every step reads the image and repositories from disk, as after a reboot, and no
# tool profits from what the previous one read. Needs root; without it the run goes on and says so.
$script:CacheDropWorks = $null
# Reads a file once, whole, and throws it away. On a virtual machine the host caches the guest's disk too, beyond
# the reach of drop_caches: the first tool to read a freshly written image pays the host's cold read and the next
# ones do not. Reading it once before a step gives every tool the same start (the guest's cache is dropped after).
function Read-Through([string] $Path) {
    $buffer = [byte[]]::new(8MB)
    $stream = [IO.File]::OpenRead($Path)
    try { while ($stream.Read($buffer, 0, $buffer.Length) -gt 0) { } } finally { $stream.Dispose() }
}

function Clear-PageCache {
    & sync
    try {
        [IO.File]::WriteAllText('/proc/sys/vm/drop_caches', '3')
        $script:CacheDropWorks = $true
    }
    catch {
        if ($null -eq $script:CacheDropWorks) { Write-Warning "Cannot drop the page cache ($($_.Exception.Message)); steps may read from a warm cache." }
        $script:CacheDropWorks = $false
    }
}

function Get-DirectorySize([string] $Path) {
    # du -sb: apparent size in bytes, as the issue asks
    [long](((Invoke-Native du @('-sb', $Path)) -split '\s+')[0])
}

# User CPU seconds of one shell command, as /usr/bin/time measures them (system time, the reading, is left out).
function Measure-CpuSecond([string] $ShellCommand) {
    $timing = Join-Path $script:Logs 'floor.time'
    & /usr/bin/time -f '%U' -o $timing sh -c $ShellCommand
    if ($LASTEXITCODE -ne 0) { throw "Floor measurement failed: $ShellCommand" }
    [double]::Parse((Get-Content $timing | Where-Object { $_ -match '^\d' } | Select-Object -Last 1), $Invariant)
}

# Lower bounds of a full checkpoint and a restore of the image's bytes: the user CPU time of zstd (level 2, the
# repository's, one thread, a 1 MiB window like the repository's blocks) and of SHA-256 (openssl, which uses the
# CPU's SHA instructions as VmCheckpoint does through .NET), divided over the cores, plus the start-up. Reading,
# writing, copying and waiting are left out: no implementation of this format can be faster on this machine.
function Measure-Floor([string] $Path, [double] $Startup) {
    $cores = [Environment]::ProcessorCount
    $compressed = Join-Path $script:Work 'floor.zst'
    $q = ConvertTo-PSLiteral $Path
    $z = ConvertTo-PSLiteral $compressed
    Read-Through $Path
    $compress = Measure-CpuSecond "zstd -q -2 -T1 --zstd=wlog=20 -c $q > $z"
    $hash = Measure-CpuSecond "openssl dgst -sha256 $q > /dev/null"
    $decompress = Measure-CpuSecond "zstd -q -d -c $z > /dev/null"
    Remove-Item -LiteralPath $compressed
    $result = [pscustomobject]@{
        Cores = $cores
        CompressSeconds = $compress; HashSeconds = $hash; DecompressSeconds = $decompress
        Full = $Startup + ($compress + $hash) / $cores
        Restore = $Startup + ($decompress + $hash) / $cores
    }
    Write-Host ("  user CPU: zstd -2 {0} s, SHA-256 {1} s, zstd -d {2} s; {3} cores; start-up {4} s" -f (Format-Number $compress),
        (Format-Number $hash), (Format-Number $decompress), $cores, (Format-Number $Startup))
    Write-Host ("  full >= {0} s, restore >= {1} s" -f (Format-Number $result.Full), (Format-Number $result.Restore))
    $result
}

#endregion

#region Image and changes

# Writes DataBytes of real, varied data (a tar of /usr, as many times as needed) into a sparse raw file of
# VirtualBytes, in a few regions spread over the disk: real disks are neither all at the start nor compressible
# like a pattern. Everything else stays a hole.
function New-RawImage {
    param([string] $Path, [long] $VirtualBytes, [long] $DataBytes, [int] $RegionCount = 4)
    $regionBytes = [long]([math]::Floor($DataBytes / $RegionCount / $MiB) * $MiB)
    $stride = [long]([math]::Floor($VirtualBytes / $RegionCount / $MiB) * $MiB)
    $regions = for ($i = 0; $i -lt $RegionCount; $i++) {
        $length = if ($i -eq $RegionCount - 1) { $DataBytes - $regionBytes * ($RegionCount - 1) } else { $regionBytes }
        [pscustomobject]@{ Offset = $i * $stride; Length = $length }
    }
    $image = [IO.File]::Open($Path, [IO.FileMode]::CreateNew, [IO.FileAccess]::Write)
    $buffer = [byte[]]::new(4 * $MiB)
    $source = $null
    $passes = 0
    try {
        $image.SetLength($VirtualBytes)
        foreach ($region in $regions) {
            $image.Position = $region.Offset
            $left = $region.Length
            while ($left -gt 0) {
                if ($null -eq $source) {
                    $passes++
                    $source = Start-TarOfUsr
                }
                $read = $source.StandardOutput.BaseStream.Read($buffer, 0, [int][math]::Min($buffer.Length, $left))
                if ($read -eq 0) {
                    $source.WaitForExit(); $source.Dispose(); $source = $null
                    continue
                }
                $image.Write($buffer, 0, $read)
                $left -= $read
            }
        }
    }
    finally {
        $image.Dispose()
        if ($null -ne $source) { $source.Kill(); $source.WaitForExit(); $source.Dispose() }
    }
    if ($passes -gt 1) {
        Write-Warning "/usr holds less than $(Format-Number ($DataBytes / $GiB)) GiB: its tar was used $passes times, so part of the data repeats, which flatters every deduplicating tool."
    }
    $regions
}

function Start-TarOfUsr {
    $info = [Diagnostics.ProcessStartInfo]::new('sh')
    # tar's warnings (sockets, files that changed) do not matter here; its output is only a source of real bytes.
    foreach ($a in @('-c', 'exec tar -cf - -C / usr 2>/dev/null')) { $info.ArgumentList.Add($a) }
    $info.RedirectStandardOutput = $true
    $info.UseShellExecute = $false
    [Diagnostics.Process]::Start($info)
}

# ChangeCount writes of 1 MiB of random bytes at random 4 KiB-aligned guest offsets, through qemu-io so that the
# qcow2 changes as a running guest would change it (data clusters rewritten in place, new clusters appended).
# Random content: a pattern would compress to nothing and flatter everybody. 4 KiB alignment, like a guest's
# writes, means most changes straddle two of VmCheckpoint's 1 MiB blocks.
function Invoke-ScatteredChange {
    param([string] $DiskPath, [long] $VirtualBytes, [int] $Count, [int] $Seed, [string] $ScratchPath)
    $random = [Random]::new($Seed)
    $block = [byte[]]::new($MiB)
    $commands = [Collections.Generic.List[string]]::new()
    $changes = for ($i = 0; $i -lt $Count; $i++) {
        $offset = $random.NextInt64(0, ($VirtualBytes - $MiB) / 4096 + 1) * 4096
        $random.NextBytes($block)
        $file = Join-Path $ScratchPath ('change-{0:d5}.bin' -f $i)
        [IO.File]::WriteAllBytes($file, $block)
        $commands.Add('-c'); $commands.Add("write -q -s $file $offset $MiB")
        [pscustomobject]@{ Offset = $offset; Length = $MiB }
    }
    Invoke-Native qemu-io (@('-f', 'qcow2') + $commands + @($DiskPath)) | Out-Null
    Remove-Item (Join-Path $ScratchPath 'change-*.bin')
    $changes
}

#endregion

#region Measured steps

# Runs one step as a whole process under /usr/bin/time; its output goes to a log file, not through PowerShell, so
# that reading it costs the tool nothing. Returns seconds and peak RSS; a failure marks the tool failed.
function Invoke-TimedStep {
    param(
        [string] $Tool, [string] $Step, [string[]] $Command,
        [string] $WorkingDirectory = $script:Work
    )
    $log = Join-Path $script:Logs "$Tool-$Step.log"
    $timing = Join-Path $script:Logs "$Tool-$Step.time"
    Clear-PageCache
    Push-Location $WorkingDirectory
    try {
        # sh only redirects and then execs the tool, so /usr/bin/time measures the tool's own process.
        $env:BENCH_STEP_LOG = $log
        & /usr/bin/time -f '%e %M' -o $timing sh -c 'exec "$@" >"$BENCH_STEP_LOG" 2>&1' sh @Command
        $exitCode = $LASTEXITCODE
    }
    finally {
        Pop-Location
        Remove-Item Env:BENCH_STEP_LOG -ErrorAction SilentlyContinue
    }
    # On failure time writes "Command exited with non-zero status N" first; the measurement is the last line.
    $fields = @(((Get-Content $timing | Where-Object { $_ -match '^\d' } | Select-Object -Last 1) -split ' '))
    $result = [pscustomobject]@{
        Tool = $Tool; Step = $Step
        Seconds = [double]::Parse($fields[0], $Invariant)
        PeakBytes = [long]$fields[1] * 1024
        ExitCode = $exitCode
        Verified = $null
        Detail = $null
    }
    $script:Steps.Add($result)
    if ($exitCode -ne 0) {
        $script:Failures[$Tool] = "$Step exited with $exitCode"
        Write-Host "  $Tool $Step FAILED (exit $exitCode); last lines of $log :"
        Get-Content $log -Tail 20 | ForEach-Object { Write-Host "    $_" }
    }
    else {
        Write-Host ("  {0,-13} {1,-12} {2,8} s {3,8} MiB" -f $Tool, $Step, (Format-Number $result.Seconds), (Format-Number ($result.PeakBytes / $MiB) '0'))
    }
    $result
}

# VmCheckpoint in a fresh PowerShell process: start-up, module import and one cmdlet, as a user would run it.
# Progress is off because the peers run without theirs too. The cmdlet's own result goes to a JSON file.
function Get-VmCheckpointCommand([string] $Body, [string] $ResultPath) {
    $lines = @(
        '$ErrorActionPreference = ''Stop''; $ProgressPreference = ''SilentlyContinue'''
        "Import-Module $(ConvertTo-PSLiteral $script:ModuleManifest)"
        $Body
    )
    if ($ResultPath) { $lines[-1] += " | ConvertTo-Json -Depth 3 -Compress | Set-Content -LiteralPath $(ConvertTo-PSLiteral $ResultPath)" }
    $script:Pwsh + @('-NoProfile', '-NonInteractive', '-Command', ($lines -join "`n"))
}

# One object per tool with the commands of its steps; the peers back up the folder that holds only disk.qcow2.
# Every tool restores into its own new folder.
function Get-ToolPlan {
    $plans = [ordered]@{}
    $repo = Join-Path $script:Work 'repo-vmcheckpoint'
    $target = Join-Path $script:Work 'restore-VmCheckpoint'
    $checkpoint = "Invoke-VmCheckpoint -Name $VmName -DiskPath $(ConvertTo-PSLiteral $script:Disk) -Repository $(ConvertTo-PSLiteral $repo)" +
        ' | Select-Object Id, ReadBytes, ChangedBytes, StoredBytes, DurationSeconds'
    $plans['VmCheckpoint'] = [pscustomobject]@{
        Repository = $repo
        Init = Get-VmCheckpointCommand "New-VmCheckpointRepository -Path $(ConvertTo-PSLiteral $repo) | Out-Null"
        Full = Get-VmCheckpointCommand $checkpoint (Join-Path $script:Logs 'VmCheckpoint-full.json')
        Incremental = Get-VmCheckpointCommand $checkpoint (Join-Path $script:Logs 'VmCheckpoint-incremental.json')
        RestoreTarget = $target
        Restore = Get-VmCheckpointCommand ("Restore-VmCheckpoint -Name $VmName -Destination $(ConvertTo-PSLiteral $target) -DiskFormat qcow2" +
            " -Repository $(ConvertTo-PSLiteral $repo) -Force | Out-Null")
        RestoreWorkingDirectory = $script:Work
    }
    $repo = Join-Path $script:Work 'repo-borg'
    $target = Join-Path $script:Work 'restore-borg'
    $plans['borg'] = [pscustomobject]@{
        Repository = $repo
        Init = @('borg', 'init', '-e', 'none', $repo)
        Full = @('borg', 'create', '--compression', 'lz4', "${repo}::full", $DiskFileName)
        Incremental = @('borg', 'create', '--compression', 'lz4', "${repo}::incremental", $DiskFileName)
        RestoreTarget = $target
        Restore = @('borg', 'extract', "${repo}::incremental")
        RestoreWorkingDirectory = $target  # borg extract writes into the current folder
    }
    $repo = Join-Path $script:Work 'repo-restic'
    $target = Join-Path $script:Work 'restore-restic'
    $plans['restic'] = [pscustomobject]@{
        Repository = $repo
        Init = @('restic', 'init', '--repo', $repo)
        Full = @('restic', 'backup', '--repo', $repo, $DiskFileName)
        Incremental = @('restic', 'backup', '--repo', $repo, $DiskFileName)
        RestoreTarget = $target
        Restore = @('restic', 'restore', 'latest', '--repo', $repo, '--target', $target)
        RestoreWorkingDirectory = $script:Work
    }
    $repo = Join-Path $script:Work 'repo-rdiff-backup'
    $target = Join-Path $script:Work 'restore-rdiff-backup'
    $plans['rdiff-backup'] = [pscustomobject]@{
        Repository = $repo
        Init = $null  # the first backup creates the repository
        Full = @('rdiff-backup', 'backup', $script:Source, $repo)
        Incremental = @('rdiff-backup', 'backup', $script:Source, $repo)
        RestoreTarget = $target
        Restore = @('rdiff-backup', 'restore', '--at', 'now', $repo, $target)
        RestoreWorkingDirectory = $script:Work
    }
    $plans
}

# Checks a restore cheaply: VmCheckpoint writes a new qcow2, so its guest content is compared; the peers restore
# the file itself, so the bytes are.
function Test-Restore {
    param([string] $Tool, [string] $Target)
    $restored = @(Get-ChildItem -LiteralPath $Target -Recurse -File -Filter $DiskFileName)
    if ($restored.Count -ne 1) { return "FAIL ($($restored.Count) files named $DiskFileName restored)" }
    if ($Tool -eq 'VmCheckpoint') {
        $output = & qemu-img compare -q -f qcow2 -F qcow2 $restored[0].FullName $script:Disk 2>&1
    }
    else {
        $output = & cmp $restored[0].FullName $script:Disk 2>&1
    }
    if ($LASTEXITCODE -eq 0) { 'OK' } else { "FAIL ($($output -join ' '))" }
}

#endregion

#region Report

function Get-Step([string] $Tool, [string] $Step) {
    $script:Steps | Where-Object { $_.Tool -eq $Tool -and $_.Step -eq $Step -and $_.ExitCode -eq 0 } | Select-Object -First 1
}

function Format-Ratio($Mine, $Theirs) {
    if ($null -eq $Mine -or $null -eq $Theirs -or $Theirs -eq 0) { return 'n/a' }
    (Format-Number ($Mine / $Theirs)) + 'x'
}

function Write-StepTable([string] $Step, [string[]] $Tools) {
    $mine = Get-Step 'VmCheckpoint' $Step
    $mineSeconds = if ($mine) { $mine.Seconds }
    $rows = foreach ($tool in $Tools) {
        $s = Get-Step $tool $Step
        $theirSeconds = if ($s) { $s.Seconds }
        [pscustomobject]@{
            Tool = $tool
            Seconds = if ($s) { Format-Number $s.Seconds } else { 'failed' }
            'Peak MiB' = if ($s) { Format-Number ($s.PeakBytes / $MiB) '0' } else { '' }
            'VmCheckpoint/tool' = if ($tool -eq 'VmCheckpoint') { '' } else { Format-Ratio $mineSeconds $theirSeconds }
            Restore = if ($s -and $null -ne $s.Verified) { $s.Verified } else { '' }
        }
    }
    $columns = @('Tool', 'Seconds', 'Peak MiB', 'VmCheckpoint/tool')
    if ($Step -eq 'restore') { $columns += 'Restore' }
    Write-Host ''
    Write-Host "$Step (whole process, seconds; ratio below 1 means VmCheckpoint is faster)"
    Write-Host (($rows | Format-Table -Property $columns -AutoSize | Out-String -Width 200).TrimEnd())
}

# A target is PASS or MISS when both sides were measured, else n/a (a peer not run or failed).
# -Below: strictly below the limit instead of at most the limit.
function Get-Target([string] $Name, $Mine, $Limit, [string] $Detail, [switch] $Below) {
    $met = if ($Below) { $Mine -lt $Limit } else { $Mine -le $Limit }
    $verdict = if ($null -eq $Mine -or $null -eq $Limit) { 'n/a' } elseif ($met) { 'PASS' } else { 'MISS' }
    [pscustomobject]@{ Target = $Name; Result = $verdict; Detail = $Detail }
}

#endregion

# ---------------------------------------------------------------------------------------------------------------

if (-not $IsLinux) { throw 'The benchmark runs on Linux (borg, restic, rdiff-backup, qemu-utils, /proc).' }
if ($DataGiB -gt $VirtualGiB) { throw "DataGiB ($DataGiB) must not exceed VirtualGiB ($VirtualGiB)." }
$ModuleManifest = Join-Path (Resolve-Path -LiteralPath $ModulePath).Path 'VmCheckpoint.psd1'
if (-not (Test-Path -LiteralPath $ModuleManifest)) { throw "No VmCheckpoint.psd1 in $ModulePath; build first (./build.ps1 Build)." }

Install-Prerequisite

$VirtualBytes = [long]([math]::Floor($VirtualGiB * $GiB / $MiB) * $MiB)
$DataBytes = [long]([math]::Floor($DataGiB * $GiB / $MiB) * $MiB)
$Tools = @('VmCheckpoint') + @('borg', 'restic', 'rdiff-backup' | Where-Object { $_ -in $Peer })
$Pwsh = Get-PwshCommand

# Work folder: a new one by default; a given one must be empty, since it is removed at the end.
$createdWork = $false
if (-not $WorkPath) { $WorkPath = Join-Path '/var/tmp' ('vmcheckpoint-bench-' + (Get-Date -Format 'yyyyMMdd-HHmmss')) }
$WorkPath = [IO.Path]::TrimEndingDirectorySeparator([IO.Path]::GetFullPath($WorkPath))
if (Test-Path -LiteralPath $WorkPath) {
    if (Get-ChildItem -LiteralPath $WorkPath -Force) { throw "The work folder $WorkPath is not empty." }
}
else {
    New-Item -ItemType Directory -Path $WorkPath | Out-Null
    $createdWork = $true
}
$Work = $WorkPath
if (-not $OutFile) { $OutFile = "$Work.json" }
$OutFile = [IO.Path]::GetFullPath($OutFile)

# Space: the raw image and the qcow2 exist together while converting; later the qcow2, four repositories of up to
# the data size each (rdiff-backup keeps a plain mirror) and one restore at a time.
$needBytes = 6 * $DataBytes + $GiB
$freeBytes = ([IO.DriveInfo]::new($Work)).AvailableFreeSpace
if ($freeBytes -lt $needBytes) {
    if ($createdWork) { Remove-Item -LiteralPath $Work -Recurse -Force }
    Write-Host ("Not enough free space in {0}: {1} GiB free, about {2} GiB needed (6 x {3} GiB of data + 1 GiB). Use -WorkPath on a larger file system or a smaller -DataGiB." -f
        $Work, (Format-Number ($freeBytes / $GiB) '0.0'), (Format-Number ($needBytes / $GiB) '0.0'), $DataGiB)
    exit 1
}

$Steps = [Collections.Generic.List[object]]::new()
$Failures = [ordered]@{}
$Logs = Join-Path $Work 'logs'
$Source = Join-Path $Work 'source'
$Disk = Join-Path $Source $DiskFileName
New-Item -ItemType Directory -Path $Logs, $Source | Out-Null

# The tools' own state (borg's cache and security folder, restic's cache, VmCheckpoint's catalog) lives in the work
# folder: every run starts from nothing and leaves nothing behind. The caller's values are put back at the end.
$benchEnvironment = [ordered]@{
    VMCHECKPOINT_CATALOG = Join-Path $Work 'vmcheckpoint-catalog.db'
    BORG_BASE_DIR = Join-Path $Work 'borg-home'
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK = 'yes'
    BORG_RELOCATED_REPO_ACCESS_IS_OK = 'yes'
    RESTIC_PASSWORD = 'bench'
    RESTIC_CACHE_DIR = Join-Path $Work 'restic-cache'
}
$savedEnvironment = @{}
foreach ($name in $benchEnvironment.Keys) {
    $savedEnvironment[$name] = [Environment]::GetEnvironmentVariable($name)
    [Environment]::SetEnvironmentVariable($name, $benchEnvironment[$name])
}

$exitCode = 0
try {
    Write-Section 'Set-up'
    $versions = [ordered]@{
        VmCheckpoint = (Import-PowerShellDataFile $ModuleManifest).ModuleVersion
        PowerShell = $PSVersionTable.PSVersion.ToString()
        borg = (Invoke-Native borg @('--version')) -join ' '
        restic = (Invoke-Native restic @('version')) -join ' '
        'rdiff-backup' = (Invoke-Native rdiff-backup @('--version')) -join ' '
        'qemu-img' = @(Invoke-Native qemu-img @('--version'))[0]
    }
    $versions.GetEnumerator() | ForEach-Object { Write-Host ("  {0,-13} {1}" -f $_.Key, $_.Value) }
    Write-Host "  work folder   $Work ($(Format-Number ($freeBytes / $GiB) '0.0') GiB free)"

    Write-Host "  image: $(Format-Number $VirtualGiB '0.##') GiB virtual, $(Format-Number $DataGiB '0.##') GiB of data from a tar of /usr..."
    $raw = Join-Path $Work 'disk.raw'
    $regions = New-RawImage -Path $raw -VirtualBytes $VirtualBytes -DataBytes $DataBytes
    Invoke-Native qemu-img @('convert', '-f', 'raw', '-O', 'qcow2', $raw, $Disk) | Out-Null
    Remove-Item -LiteralPath $raw
    $diskBytes = (Get-Item -LiteralPath $Disk).Length
    Write-Host "  $Disk : $(Format-Number ($diskBytes / $GiB) '0.00') GiB file, data in $(@($regions).Count) regions at $((@($regions) | ForEach-Object { (Format-Number ($_.Offset / $GiB) '0.##') + ' GiB' }) -join ', ')"

    $plans = Get-ToolPlan
    foreach ($tool in $Tools) {
        if ($plans[$tool].Init) { Invoke-Native $plans[$tool].Init[0] @($plans[$tool].Init | Select-Object -Skip 1) | Out-Null }
    }

    # What every VmCheckpoint step pays before its cmdlet runs; reported, not subtracted.
    Write-Section 'Start-up of PowerShell with the module (part of every VmCheckpoint step)'
    $startup = Invoke-TimedStep -Tool 'VmCheckpoint' -Step 'startup' -Command (Get-VmCheckpointCommand '$null = Get-Command Invoke-VmCheckpoint')

    Write-Section 'Full backup'
    Read-Through $Disk
    foreach ($tool in $Tools) { Invoke-TimedStep -Tool $tool -Step 'full' -Command $plans[$tool].Full -WorkingDirectory $Source | Out-Null }

    # What no implementation of VmCheckpoint's format can beat on this machine: the CPU time of compressing (zstd at
    # the repository's level, one thread) and hashing (SHA-256) these bytes, spread over every core, plus the start-up.
    # Reading, writing and copying are left out, so this is a lower bound, not an estimate.
    Write-Section 'Floor: start-up + user CPU of zstd and SHA-256 on this data, spread over every core (a lower bound)'
    $floor = Measure-Floor -Path $Disk -Startup $startup.Seconds

    Write-Section "$ChangeCount scattered 1 MiB writes of random data (seed $Seed)"
    $changes = Invoke-ScatteredChange -DiskPath $Disk -VirtualBytes $VirtualBytes -Count $ChangeCount -Seed $Seed -ScratchPath $Work
    $diskBytesAfter = (Get-Item -LiteralPath $Disk).Length
    Write-Host "  $DiskFileName is now $(Format-Number ($diskBytesAfter / $GiB) '0.00') GiB"

    Write-Section 'Incremental backup'
    Read-Through $Disk
    foreach ($tool in $Tools) {
        if ($Failures.Contains($tool)) { continue }
        Invoke-TimedStep -Tool $tool -Step 'incremental' -Command $plans[$tool].Incremental -WorkingDirectory $Source | Out-Null
    }
    $repositoryBytes = [ordered]@{}
    foreach ($tool in $Tools) { if (-not $Failures.Contains($tool)) { $repositoryBytes[$tool] = Get-DirectorySize $plans[$tool].Repository } }

    Write-Section 'Restore of the latest backup'
    foreach ($tool in $Tools) {
        if ($Failures.Contains($tool)) { continue }
        $target = $plans[$tool].RestoreTarget
        # rdiff-backup restores into a folder it creates itself, the others into an empty one
        if ($tool -ne 'rdiff-backup') { New-Item -ItemType Directory -Path $target | Out-Null }
        $step = Invoke-TimedStep -Tool $tool -Step 'restore' -Command $plans[$tool].Restore -WorkingDirectory $plans[$tool].RestoreWorkingDirectory
        if ($step.ExitCode -eq 0) {
            $step.Verified = Test-Restore -Tool $tool -Target $target
            Write-Host "    restored image: $($step.Verified)"
            if ($step.Verified -ne 'OK') { $Failures[$tool] = "restore $($step.Verified)" }
        }
        # one restore on disk at a time
        if (Test-Path -LiteralPath $target) { Remove-Item -LiteralPath $target -Recurse -Force }
    }

    # The same disk as VHDX (issue 3): full checkpoints of each format into fresh repositories, cold cache each time,
    # in ABBA order (qcow2, vhdx, vhdx, qcow2, ...) so that a drift of the shared machine's speed hits both formats
    # alike; the medians are compared. One pair of runs was within the I/O noise of this machine either way.
    Write-Section "The same disk as VHDX: $(2 * $FormatRounds) full checkpoints of the qcow2 and of a VHDX copy, ABBA order (VmCheckpoint only)"
    $vhdx = Join-Path $Work 'disk.vhdx'
    Invoke-Native qemu-img @('convert', '-f', 'qcow2', '-O', 'vhdx', '-o', 'subformat=dynamic', $Disk, $vhdx) | Out-Null
    Read-Through $Disk
    Read-Through $vhdx
    $formatTimes = @{ qcow2 = [Collections.Generic.List[double]]::new(); vhdx = [Collections.Generic.List[double]]::new() }
    $order = for ($i = 0; $i -lt $FormatRounds; $i++) { if ($i % 2 -eq 0) { 'qcow2', 'vhdx' } else { 'vhdx', 'qcow2' } }
    $round = 0
    foreach ($format in $order) {
        $round++
        $image = if ($format -eq 'vhdx') { $vhdx } else { $Disk }
        $repository = Join-Path $Work "vmcheckpoint-$format-repo"
        $body = "New-VmCheckpointRepository -Path $(ConvertTo-PSLiteral $repository) | Out-Null; Invoke-VmCheckpoint -Name $format-copy -DiskPath $(ConvertTo-PSLiteral $image) -Repository $(ConvertTo-PSLiteral $repository)"
        $step = Invoke-TimedStep -Tool 'VmCheckpoint' -Step "full-$format-$round" -Command (Get-VmCheckpointCommand $body)
        if ($step.ExitCode -eq 0) { $formatTimes[$format].Add($step.Seconds) }
        Remove-Item -LiteralPath $repository -Recurse -Force
    }
    Remove-Item -LiteralPath $vhdx
    $median = { param($values) $sorted = @($values | Sort-Object); if ($sorted.Count -eq 0) { $null } elseif ($sorted.Count % 2) { $sorted[[int][math]::Floor($sorted.Count / 2)] } else { ($sorted[$sorted.Count / 2 - 1] + $sorted[$sorted.Count / 2]) / 2 } }
    $formatMedian = @{ qcow2 = & $median $formatTimes.qcow2; vhdx = & $median $formatTimes.vhdx }
    $vhdxRatio = if ($formatMedian.qcow2 -and $formatMedian.vhdx) { $formatMedian.vhdx / $formatMedian.qcow2 }
    Write-Host ("  qcow2: {0} s; vhdx: {1} s" -f (($formatTimes.qcow2 | ForEach-Object { Format-Number $_ }) -join ', '), (($formatTimes.vhdx | ForEach-Object { Format-Number $_ }) -join ', '))
    Write-Host ("  VHDX / qcow2 time, medians: {0}x ({1} s vs {2} s)" -f (Format-Number $vhdxRatio), (Format-Number $formatMedian.vhdx), (Format-Number $formatMedian.qcow2))

    # ---- report ----
    Write-Section 'Results'
    Write-Host "Image: $(Format-Number $VirtualGiB '0.##') GiB virtual, $(Format-Number ($DataBytes / $GiB) '0.##') GiB of data; $DiskFileName $(Format-Number ($diskBytes / $GiB) '0.00') GiB before and $(Format-Number ($diskBytesAfter / $GiB) '0.00') GiB after the changes."
    Write-Host 'borg, restic and rdiff-backup back up disk.qcow2 as a plain file: a qcow2 holds no holes, so they read all of it;'
    Write-Host 'VmCheckpoint reads the qcow2 format and skips clusters that are unallocated or zero.'
    Write-Host ("Each time is a whole process (/usr/bin/time), start-up included: VmCheckpoint's is a fresh PowerShell importing the module, {0} s and {1} MiB on its own." -f
        (Format-Number $startup.Seconds), (Format-Number ($startup.PeakBytes / $MiB) '0'))
    Write-Host $(if ($script:CacheDropWorks) { 'The page cache was dropped before every step.' } else { 'The page cache could NOT be dropped between steps: later tools may have read from a warm cache.' })
    foreach ($step in 'full', 'incremental', 'restore') { Write-StepTable $step $Tools }

    foreach ($step in 'full', 'incremental') {
        $json = Join-Path $Logs "VmCheckpoint-$step.json"
        if (Test-Path $json) {
            $info = Get-Content -Raw $json | ConvertFrom-Json
            (Get-Step 'VmCheckpoint' $step).Detail = $info
            Write-Host ("VmCheckpoint {0}: read {1} MiB, changed {2} MiB, stored {3} MiB, {4} s inside the cmdlet" -f $step,
                (Format-Number ($info.ReadBytes / $MiB) '0'), (Format-Number ($info.ChangedBytes / $MiB) '0'), (Format-Number ($info.StoredBytes / $MiB) '0'), (Format-Number $info.DurationSeconds))
        }
    }

    Write-Host ''
    Write-Host "Repository size after the incremental (du -sb; local state not counted: VmCheckpoint's catalog, borg's and restic's caches)"
    $sizeRows = foreach ($tool in $Tools) {
        [pscustomobject]@{
            Tool = $tool
            Bytes = if ($repositoryBytes.Contains($tool)) { $repositoryBytes[$tool] } else { 'failed' }
            MiB = if ($repositoryBytes.Contains($tool)) { Format-Number ($repositoryBytes[$tool] / $MiB) '0.0' } else { '' }
            'VmCheckpoint/tool' = if ($tool -eq 'VmCheckpoint') { '' } else { Format-Ratio $repositoryBytes['VmCheckpoint'] $repositoryBytes[$tool] }
        }
    }
    Write-Host (($sizeRows | Format-Table -AutoSize | Out-String -Width 200).TrimEnd())

    $mine = @{}; $borg = @{}
    foreach ($step in 'full', 'incremental', 'restore') {
        $mine[$step] = (Get-Step 'VmCheckpoint' $step) | ForEach-Object Seconds
        $borg[$step] = (Get-Step 'borg' $step) | ForEach-Object Seconds
    }
    $peakBytes = ($Steps | Where-Object { $_.Tool -eq 'VmCheckpoint' -and $_.ExitCode -eq 0 } | Measure-Object PeakBytes -Maximum).Maximum
    $half = { param($x) if ($null -ne $x) { $x / 2 } }
    $targets = @(
        foreach ($step in 'full', 'incremental', 'restore') {
            Get-Target "$step <= half of borg's time" $mine[$step] (& $half $borg[$step]) ("{0} s vs borg {1} s, ratio {2}" -f
                (Format-Number $mine[$step]), (Format-Number $borg[$step]), (Format-Ratio $mine[$step] $borg[$step]))
        }
        Get-Target "repository <= restic's" $repositoryBytes['VmCheckpoint'] $repositoryBytes['restic'] ("{0} MiB vs restic {1} MiB" -f
            (Format-Number $repositoryBytes['VmCheckpoint'] '0.0' $MiB), (Format-Number $repositoryBytes['restic'] '0.0' $MiB))
        Get-Target 'VHDX checkpoint <= qcow2 checkpoint' $formatMedian.vhdx $formatMedian.qcow2 ("medians of {0}: {1} s vs {2} s, ratio {3}x" -f
            $FormatRounds, (Format-Number $formatMedian.vhdx), (Format-Number $formatMedian.qcow2), (Format-Number $vhdxRatio))
        Get-Target 'peak memory < 300 MB' $peakBytes $MemoryLimitBytes -Below ("{0} MB (max RSS of all VmCheckpoint processes; checked at this disk size only)" -f
            (Format-Number $peakBytes '0' 1e6))
    )
    Write-Host ''
    Write-Host ("Floor on this machine (start-up + user CPU of zstd -2 and SHA-256 over {0} cores; reading and writing left out):" -f $floor.Cores)
    foreach ($step in 'full', 'restore') {
        Write-Host ("  {0,-8} >= {1} s, that is {2} of borg's {3} s (target 0.5x)" -f $step, (Format-Number $floor.$step),
            (Format-Ratio $floor.$step $borg[$step]), (Format-Number $borg[$step]))
    }
    Write-Host ''
    Write-Host 'Targets'
    foreach ($t in $targets) { Write-Host ("  {0,-4}  {1,-36} {2}" -f $t.Result, $t.Target, $t.Detail) }

    if ($Failures.Count -gt 0) {
        Write-Host ''
        foreach ($f in $Failures.GetEnumerator()) { Write-Host "FAILED: $($f.Key): $($f.Value)" }
        $exitCode = 1
    }

    [ordered]@{
        Time = (Get-Date).ToString('o')
        Host = [ordered]@{ Name = [Environment]::MachineName; Processors = [Environment]::ProcessorCount; Kernel = (& uname -r) }
        Versions = $versions
        Parameters = [ordered]@{ VirtualGiB = $VirtualGiB; DataGiB = $DataGiB; ChangeCount = $ChangeCount; Seed = $Seed; Peers = $Peer }
        Image = [ordered]@{ VirtualBytes = $VirtualBytes; DataBytes = $DataBytes; Regions = @($regions); FileBytes = $diskBytes; FileBytesAfterChanges = $diskBytesAfter }
        Changes = @($changes)
        PageCacheDropped = [bool]$script:CacheDropWorks
        Steps = $Steps
        RepositoryBytes = $repositoryBytes
        VmCheckpointPeakBytes = $peakBytes
        Floor = $floor
        Targets = $targets
        Failures = $Failures
    } | ConvertTo-Json -Depth 6 | Set-Content -LiteralPath $OutFile
    Write-Host ''
    Write-Host "Results: $OutFile"
}
catch {
    Write-Host "Benchmark aborted: $($_.Exception.Message)"
    Write-Host $_.ScriptStackTrace
    $exitCode = 1
}
finally {
    foreach ($name in $savedEnvironment.Keys) { [Environment]::SetEnvironmentVariable($name, $savedEnvironment[$name]) }
    if ($Keep) { Write-Host "Kept the work folder $Work" }
    elseif ($createdWork) { Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue }
    else { Get-ChildItem -LiteralPath $Work -Force | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue }
}
exit $exitCode
