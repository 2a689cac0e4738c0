<#
.SYNOPSIS
    Times the same checkpoints into a local folder and into S3 (Ceph's radosgw on this machine), each plain and
    encrypted (New-VmCheckpointRepository -Encrypt), and prints the ratios.
.DESCRIPTION
    One image (VirtualGiB of qcow2 holding DataGiB of real data: a tar of /usr, in four regions), then for each target
    in turn, folder first: a full checkpoint, 80 scattered 1 MiB random writes, an incremental checkpoint, a restore.
    Every step is a fresh PowerShell process (start-up included, as in Invoke-Benchmark.ps1), with the page cache
    dropped before it; the S3 gateway is tests/hosts/start-s3.sh's (one-node Ceph, one OSD on a file in /var/tmp, the
    same disk as the folder repository). Targets of issue 17: S3 within 2x of the folder; an encrypted repository within
    1.15x of a plain one (each encrypted step's process also derives the key from the password: Argon2id, 64 MiB).
.EXAMPLE
    dotnet pwsh -NoProfile -File bench/Invoke-S3Benchmark.ps1 -ModulePath out/VmCheckpoint -VirtualGiB 4 -DataGiB 1
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [ValidateRange(0.01, 65536)] [double] $VirtualGiB = 4,
    [ValidateRange(0.01, 65536)] [double] $DataGiB = 1,
    [ValidateRange(1, 100000)] [int] $ChangeCount = 80,
    [int] $Seed = 20240601,
    [string] $WorkPath,
    [string] $OutFile,
    [ValidateSet('folder', 'folder-encrypted', 's3', 's3-encrypted')] [string[]] $Targets = @('folder', 'folder-encrypted', 's3', 's3-encrypted'),
    [switch] $Keep
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$MiB = 1MB
$GiB = 1GB
$Root = Split-Path $PSScriptRoot -Parent
$ModulePath = (Resolve-Path $ModulePath).Path
$Invariant = [Globalization.CultureInfo]::InvariantCulture

function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    $output = & $File @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
    $output
}

function Clear-PageCache {
    & sync
    try { [IO.File]::WriteAllText('/proc/sys/vm/drop_caches', '3') }
    catch { Write-Warning "Cannot drop the page cache ($($_.Exception.Message)); steps may read from a warm cache." }
}

function Get-PwshCommand {
    $process = [Environment]::ProcessPath
    if ([IO.Path]::GetFileNameWithoutExtension($process) -eq 'dotnet') { return @($process, (Join-Path $PSHOME 'pwsh.dll')) }
    @($process)
}

function ConvertTo-PSLiteral([string] $Text) { "'" + ($Text -replace "'", "''") + "'" }

# One step: a fresh pwsh that imports the module and runs Script; returns its wall-clock seconds.
function Measure-Step([string] $Script) {
    Clear-PageCache
    $cmd = Get-PwshCommand
    $full = "`$ErrorActionPreference = 'Stop'; `$ProgressPreference = 'SilentlyContinue'; Import-Module $(ConvertTo-PSLiteral $ModulePath); $Script"
    $arguments = @($cmd | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-Command', $full)
    $sw = [Diagnostics.Stopwatch]::StartNew()
    $output = & $cmd[0] @arguments 2>&1
    $sw.Stop()
    if ($LASTEXITCODE -ne 0) { throw "Step failed ($LASTEXITCODE): $Script`n$output" }
    $sw.Elapsed.TotalSeconds
}

# The image: DataGiB of a tar of /usr (real, compressible bytes) in four regions of a sparse raw file, as qcow2.
function New-BenchImage([string] $Folder) {
    $raw = Join-Path $Folder 'disk.raw'
    $virtual = [long]($VirtualGiB * $GiB)
    $data = [long]($DataGiB * $GiB)
    Invoke-Native truncate @('-s', "$virtual", $raw) | Out-Null
    $region = [long]([math]::Floor($data / 4 / $MiB))
    $stride = [long]([math]::Floor($virtual / 4 / $MiB))
    $tar = Join-Path $Folder 'usr.tar'
    & sh -c "tar -cf - -C / usr 2>/dev/null | head -c $data > '$tar'"
    for ($i = 0; $i -lt 4; $i++) {
        Invoke-Native dd @("if=$tar", "of=$raw", 'bs=1M', "skip=$($i * $region)", "seek=$($i * $stride)", "count=$region", 'conv=notrunc,sparse', 'status=none') | Out-Null
    }
    Remove-Item $tar
    $qcow2 = Join-Path $Folder 'disk.qcow2'
    Invoke-Native qemu-img @('convert', '-O', 'qcow2', $raw, $qcow2) | Out-Null
    Remove-Item $raw
    $qcow2
}

function Invoke-ScatteredChange([string] $DiskPath) {
    $random = [Random]::new($Seed)
    $block = [byte[]]::new($MiB)
    $virtual = [long]($VirtualGiB * $GiB)
    $commands = [Collections.Generic.List[string]]::new()
    $scratch = Split-Path $DiskPath -Parent
    for ($i = 0; $i -lt $ChangeCount; $i++) {
        $offset = $random.NextInt64(0, ($virtual - $MiB) / 4096 + 1) * 4096
        $random.NextBytes($block)
        $file = Join-Path $scratch ('change-{0:d5}.bin' -f $i)
        [IO.File]::WriteAllBytes($file, $block)
        $commands.Add('-c'); $commands.Add("write -q -s $file $offset $MiB")
    }
    Invoke-Native qemu-io (@('-f', 'qcow2') + $commands + @($DiskPath)) | Out-Null
    Remove-Item (Join-Path $scratch 'change-*.bin')
}

# ---- the gateway
$output = & bash (Join-Path $Root 'tests/hosts/start-s3.sh') 2>&1
if ($LASTEXITCODE -ne 0) { throw "The S3 gateway could not be started: $output" }
foreach ($line in @($output)) { if ("$line" -match '^export (AWS_[A-Z_]+)=(.*)$') { Set-Item "env:$($Matches[1])" $Matches[2] } }

$work = if ($WorkPath) { $WorkPath } else { Join-Path '/var/tmp' ('vmckpt-s3bench-' + [guid]::NewGuid().ToString('N').Substring(0, 8)) }
New-Item -ItemType Directory -Force -Path $work | Out-Null
$env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
$bucket = 'vmckpt-bench-' + [guid]::NewGuid().ToString('N').Substring(0, 8)
$addresses = [ordered]@{ 'folder' = (Join-Path $work 'repo'); 'folder-encrypted' = (Join-Path $work 'repo-encrypted'); 's3' = "s3://$bucket/repo"; 's3-encrypted' = "s3://$bucket/repo-encrypted" }
$chosen = [ordered]@{}
foreach ($name in $addresses.Keys) { if ($name -in $Targets) { $chosen[$name] = $addresses[$name] } }
$results = [Collections.Generic.List[object]]::new()
try {
    Write-Host "Image: $VirtualGiB GiB virtual, $DataGiB GiB of data (tar of /usr); $ChangeCount scattered 1 MiB changes; S3 at $env:AWS_ENDPOINT_URL"
    $source = Join-Path $work 'source'
    New-Item -ItemType Directory $source | Out-Null
    $base = New-BenchImage $source
    $baseCopy = Join-Path $work 'base.qcow2'
    Copy-Item $base $baseCopy
    foreach ($name in $chosen.Keys) {
        $repo = $chosen[$name]
        # Each target starts from the same image: a copy of the base, changed with the same seed.
        $disk = Join-Path $source "disk-$name.qcow2"
        Copy-Item $baseCopy $disk -Force
        $encrypted = $name -like '*-encrypted'
        # The steps' processes read the password as unattended runs do.
        if ($encrypted) { $env:VMCHECKPOINT_PASSWORD = 'bench password' } else { Remove-Item Env:VMCHECKPOINT_PASSWORD -ErrorAction SilentlyContinue }
        Measure-Step "New-VmCheckpointRepository -Path $(ConvertTo-PSLiteral $repo)$(if ($encrypted) { ' -Encrypt' }) | Out-Null" | Out-Null
        $full = Measure-Step "Invoke-VmCheckpoint -Name bench -DiskPath $(ConvertTo-PSLiteral $disk) -Repository $(ConvertTo-PSLiteral $repo) | Out-Null"
        Invoke-ScatteredChange $disk
        $incremental = Measure-Step "Invoke-VmCheckpoint -Name bench -DiskPath $(ConvertTo-PSLiteral $disk) -Repository $(ConvertTo-PSLiteral $repo) | Out-Null"
        $dest = Join-Path $work "restore-$name"
        $restore = Measure-Step "Restore-VmCheckpoint -Name bench -Destination $(ConvertTo-PSLiteral $dest) -Repository $(ConvertTo-PSLiteral $repo) | Out-Null"
        $restored = @(Get-ChildItem $dest -Filter *.qcow2)[0].FullName
        Invoke-Native qemu-img @('compare', $disk, $restored) | Out-Null
        Remove-Item $dest -Recurse -Force
        $results.Add([pscustomobject]@{ Target = $name; Full = $full; Incremental = $incremental; Restore = $restore })
        Write-Host ("{0,-16} full {1,7:0.00} s   incremental {2,7:0.00} s   restore {3,7:0.00} s   (restore equal: qemu-img compare)" -f $name, $full, $incremental, $restore)
    }
    Remove-Item Env:VMCHECKPOINT_PASSWORD -ErrorAction SilentlyContinue
    $byName = @{}
    foreach ($r in $results) { $byName[$r.Target] = $r }
    $verdict = foreach ($pair in @(
            @{ Title = 'S3 (radosgw) / folder'; Of = 's3'; To = 'folder'; Limit = 2.0 }
            @{ Title = 'encrypted / plain, folder'; Of = 'folder-encrypted'; To = 'folder'; Limit = 1.15 }
            @{ Title = 'encrypted / plain, S3'; Of = 's3-encrypted'; To = 's3'; Limit = 1.15 })) {
        if (-not ($byName.ContainsKey($pair.Of) -and $byName.ContainsKey($pair.To))) { continue }
        Write-Host ''
        Write-Host "== $($pair.Title) =="
        foreach ($step in 'Full', 'Incremental', 'Restore') {
            $of = $byName[$pair.Of].$step; $to = $byName[$pair.To].$step
            $ratio = $of / $to
            $mark = if ($ratio -le $pair.Limit) { 'PASS' } else { 'MISS' }
            Write-Host ("{0,-12} {1,7:0.00} s / {2,7:0.00} s = {3,5:0.00}x   {4} (target: within {5}x)" -f $step, $of, $to, $ratio, $mark, $pair.Limit)
            [pscustomobject]@{ Comparison = $pair.Title; Step = $step; Of = $of; To = $to; Ratio = $ratio; Target = $mark }
        }
    }
    $json = if ($OutFile) { $OutFile } else { "$work.json" }
    [pscustomobject]@{ VirtualGiB = $VirtualGiB; DataGiB = $DataGiB; ChangeCount = $ChangeCount; Endpoint = $env:AWS_ENDPOINT_URL; Steps = $verdict } |
        ConvertTo-Json -Depth 4 | Set-Content $json
    Write-Host "Results: $json"
}
finally {
    & s3cmd -c /var/tmp/vmckpt-s3/s3cfg rb --recursive --force "s3://$bucket" *> $null
    if (-not $Keep) { Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue }
}
