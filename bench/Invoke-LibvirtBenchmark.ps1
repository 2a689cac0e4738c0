<#
.SYNOPSIS
    Live libvirt checkpoints: VmCheckpoint against virtnbdbackup (Debian package, with its compression) on the same
    running VM disk, in one run: full, incremental after scattered 1 MiB guest writes, and restore to qcow2.
.DESCRIPTION
    Two identical VMs (domain type qemu, no guest OS) with copies of one qcow2 (VirtualGiB virtual, DataGiB of a tar
    of /usr), one per tool, so that neither tool's libvirt checkpoints disturb the other's. Writes go through qemu-io
    on the monitor into both VMs, the same bytes at the same offsets. Every step is a whole process timed with
    /usr/bin/time, page cache dropped first. Prints times, ratios, output sizes and the targets of the issue.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [double] $VirtualGiB = 8,
    [double] $DataGiB = 3,
    [int] $ChangeCount = 80,
    [string] $WorkPath = (Join-Path '/var/tmp' ('vmcheckpoint-lvbench-' + (Get-Date -Format 'yyyyMMdd-HHmmss'))),
    # Leave the work folder (repositories, restores) in place for a closer look; the VMs are removed either way.
    [switch] $Keep,
    # Skip the memory step (Invoke-MemoryBenchmark.ps1: checkpoints with memory of a 1 GiB guest against virsh save).
    [switch] $NoMemory
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$GiB = 1GB; $MiB = 1MB
$module = (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot '../tests/Pester/TestHelpers.psm1') -Force

if (-not (Get-Command virtnbdbackup -ErrorAction SilentlyContinue)) {
    $env:DEBIAN_FRONTEND = 'noninteractive'
    & apt-get install -y -qq virtnbdbackup | Out-Null
}
& bash (Join-Path $PSScriptRoot '../tests/hosts/start-libvirt.sh') | Out-Null
New-Item -ItemType Directory $WorkPath -Force | Out-Null
& chmod 755 $WorkPath
$env:VMCHECKPOINT_CATALOG = Join-Path $WorkPath 'catalog.db'
$pwsh = Get-PwshCommand
$steps = [System.Collections.Generic.List[object]]::new()

function Clear-Cache { & sync; try { Set-Content /proc/sys/vm/drop_caches 3 } catch { } }

function Measure-Step([string] $Tool, [string] $Step, [string[]] $Command) {
    Clear-Cache
    $timing = Join-Path $WorkPath "$Tool-$Step.time"
    $log = Join-Path $WorkPath "$Tool-$Step.log"
    $env:LVB_LOG = $log
    & /usr/bin/time -f '%e %M' -o $timing sh -c 'exec "$@" >"$LVB_LOG" 2>&1' sh @Command
    $exit = $LASTEXITCODE
    $f = (Get-Content $timing | Where-Object { $_ -match '^\d' } | Select-Object -Last 1) -split ' '
    $r = [pscustomobject]@{ Tool = $Tool; Step = $Step; Seconds = [double]$f[0]; PeakMiB = [math]::Round([long]$f[1] / 1024); Exit = $exit }
    $steps.Add($r)
    Write-Host ("  {0,-14} {1,-12} {2,8:N2} s {3,6} MiB{4}" -f $Tool, $Step, $r.Seconds, $r.PeakMiB, $(if ($exit) { "  FAILED, see $log" } else { '' }))
    if ($exit) { Get-Content $log -Tail 15 | ForEach-Object { Write-Host "    $_" } }
}

function Invoke-Mine([string] $Body) { $pwsh + @('-NoProfile', '-NonInteractive', '-Command', "`$ProgressPreference='SilentlyContinue'; Import-Module '$module'; $Body") }

Write-Host "== Set-up: $VirtualGiB GiB virtual, $DataGiB GiB of data (tar of /usr), two identical VMs"
$raw = Join-Path $WorkPath 'disk.raw'
& truncate -s ([long]($VirtualGiB * $GiB)) $raw
$region = [long]($DataGiB * $GiB / 4)
$tar = Join-Path $WorkPath 'usr.tar'
# Four different slices of the tar, spread over the disk: nothing deduplicates by accident.
& sh -c "tar -cf - /usr 2>/dev/null | head -c $(4 * $region) > '$tar'"
foreach ($i in 0..3) {
    & dd "if=$tar" "of=$raw" bs=4M "skip=$($i * $region)" "count=$region" "seek=$([long]($i * $VirtualGiB * $GiB / 4))" iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc status=none
}
Remove-Item $tar
$names = @{ VmCheckpoint = 'lvbench-mine'; virtnbdbackup = 'lvbench-peer' }
foreach ($tool in $names.Keys) {
    $disk = Join-Path $WorkPath "$($names[$tool]).qcow2"
    & qemu-img convert -f raw -O qcow2 $raw $disk
    & chmod 666 $disk
    Remove-TestVm -Name $names[$tool]
    New-TestVm -Name $names[$tool] -DiskPath $disk
}
Remove-Item $raw
$repo = Join-Path $WorkPath 'repo'
$peerOut = Join-Path $WorkPath 'virtnbdbackup'
$create = Invoke-Mine "New-VmCheckpointRepository '$repo' | Out-Null"
& $create[0] @($create | Select-Object -Skip 1)

Write-Host '== Full'
Measure-Step VmCheckpoint full (Invoke-Mine "Invoke-VmCheckpoint -Name $($names.VmCheckpoint) -Repository '$repo' | Out-Null")
Measure-Step virtnbdbackup full @('virtnbdbackup', '-d', $names.virtnbdbackup, '-l', 'full', '-z', '-o', $peerOut)

Write-Host "== $ChangeCount scattered 1 MiB guest writes (same bytes, same offsets, in both VMs)"
$rng = [Random]::new(20240601)
for ($i = 0; $i -lt $ChangeCount; $i++) {
    $offset = [long]($rng.NextDouble() * ($VirtualGiB * $GiB - 1MB)) -band -4096
    foreach ($vm in $names.Values) { Write-VmDisk -Name $vm -Offset $offset -Length 1MB -Seed (5000 + $i) }
}

Write-Host '== Incremental'
Measure-Step VmCheckpoint incremental (Invoke-Mine "Invoke-VmCheckpoint -Name $($names.VmCheckpoint) -Repository '$repo' | Out-Null")
Measure-Step virtnbdbackup incremental @('virtnbdbackup', '-d', $names.virtnbdbackup, '-l', 'inc', '-z', '-o', $peerOut)

Write-Host '== Restore of the latest, to qcow2'
$mineOut = Join-Path $WorkPath 'restore-mine'; $peerRestore = Join-Path $WorkPath 'restore-peer'
Measure-Step VmCheckpoint restore (Invoke-Mine "Restore-VmCheckpoint -Name $($names.VmCheckpoint) -Destination '$mineOut' -Repository '$repo' | Out-Null")
Measure-Step virtnbdbackup restore @('virtnbdrestore', '-i', $peerOut, '-o', $peerRestore)
foreach ($tool in $names.Keys) {
    $disk = Join-Path $WorkPath "$($names[$tool]).qcow2"
    Copy-VmDisk -Name $names[$tool] -Source $disk -Destination (Join-Path $WorkPath "$tool-now.qcow2")
}
$mineFile = Get-ChildItem $mineOut -Filter *.qcow2 | Select-Object -First 1
$peerFile = Get-ChildItem $peerRestore -File | Where-Object Name -notlike '*.xml' | Where-Object Name -notlike '*.json' | Select-Object -First 1
foreach ($pair in @(@('VmCheckpoint', $mineFile), @('virtnbdbackup', $peerFile))) {
    & qemu-img compare (Join-Path $WorkPath "$($pair[0])-now.qcow2") $pair[1].FullName | Out-Null
    Write-Host ("  {0,-14} restored disk equals the VM's disk: {1}" -f $pair[0], $(if ($LASTEXITCODE -eq 0) { 'OK' } else { 'DIFFERENT' }))
}

$size = @{ VmCheckpoint = [long](& du -sb $repo).Split("`t")[0]; virtnbdbackup = [long](& du -sb $peerOut).Split("`t")[0] }
Write-Host ''
Write-Host 'Results (whole processes; ratio = VmCheckpoint / virtnbdbackup)'
foreach ($step in 'full', 'incremental', 'restore') {
    $m = $steps | Where-Object { $_.Tool -eq 'VmCheckpoint' -and $_.Step -eq $step }
    $p = $steps | Where-Object { $_.Tool -eq 'virtnbdbackup' -and $_.Step -eq $step }
    Write-Host ("  {0,-12} {1,8:N2} s vs {2,8:N2} s   ratio {3:N2}x" -f $step, $m.Seconds, $p.Seconds, ($m.Seconds / $p.Seconds))
}
Write-Host ("  output       {0:N1} MiB vs {1:N1} MiB   ratio {2:N2}x" -f ($size.VmCheckpoint / $MiB), ($size.virtnbdbackup / $MiB), ($size.VmCheckpoint / $size.virtnbdbackup))
$r = { param($s) ($steps | Where-Object { $_.Tool -eq 'VmCheckpoint' -and $_.Step -eq $s }).Seconds / ($steps | Where-Object { $_.Tool -eq 'virtnbdbackup' -and $_.Step -eq $s }).Seconds }
Write-Host 'Targets'
Write-Host ("  {0}  incremental <= 0.8 of virtnbdbackup" -f $(if ((& $r 'incremental') -le 0.8) { 'PASS' } else { 'MISS' }))
Write-Host ("  {0}  full <= 0.5 of virtnbdbackup" -f $(if ((& $r 'full') -le 0.5) { 'PASS' } else { 'MISS' }))
Write-Host ("  {0}  restore <= 0.5 of virtnbdbackup" -f $(if ((& $r 'restore') -le 0.5) { 'PASS' } else { 'MISS' }))
Write-Host ("  {0}  repository smaller than virtnbdbackup's output" -f $(if ($size.VmCheckpoint -lt $size.virtnbdbackup) { 'PASS' } else { 'MISS' }))
foreach ($vm in $names.Values) { Remove-TestVm -Name $vm }
if ($Keep) { Write-Host "Work folder kept: $WorkPath" } else { Remove-Item $WorkPath -Recurse -Force }
if (-not $NoMemory) {
    Write-Host ''
    Write-Host '== Memory: checkpoints with memory of a guest using 768 MiB of its 1 GiB, against virsh save + restore'
    & $pwsh[0] @($pwsh | Select-Object -Skip 1) -NoProfile -NonInteractive -File (Join-Path $PSScriptRoot 'Invoke-MemoryBenchmark.ps1') -ModulePath $module
}
