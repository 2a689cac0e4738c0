<#
.SYNOPSIS
    The main job on real data: a VM's two disks (a qcow2 made by qemu-img holding real files, and a raw disk)
    checkpointed into a folder repository, changed, checkpointed again, verified, restored and compared.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $WorkPath = (Join-Path ([IO.Path]::GetTempPath()) 'vmcheckpoint-demo')
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Step([string] $Text) { Write-Host "`n== $Text" -ForegroundColor Cyan }
function Show([string] $Command) {
    Write-Host "PS> $Command" -ForegroundColor Yellow
    # Wide enough for the default tables even when the output is not a terminal.
    Invoke-Expression $Command | Out-String -Width 160 | ForEach-Object TrimEnd | Write-Host
}

if (Test-Path $WorkPath) { Remove-Item $WorkPath -Recurse -Force }
New-Item -ItemType Directory $WorkPath | Out-Null
Set-Location $WorkPath
$env:VMCHECKPOINT_CATALOG = Join-Path $WorkPath 'catalog.db'
$env:VMCHECKPOINT_REPOSITORY = Join-Path $WorkPath 'repository'

Step 'A VM with two disks: web01.qcow2 (2 GiB virtual, real files from /usr/share) and web01-data.raw (sparse)'
$tar = Join-Path $WorkPath 'usr-share.tar'
& tar -cf $tar --ignore-failed-read -C /usr/share doc man 2>$null
$tarBytes = (Get-Item $tar).Length
& qemu-img create -q -f qcow2 web01.qcow2 2G
& qemu-io -f qcow2 -c "write -q -s $tar 64M $tarBytes" web01.qcow2
& qemu-img create -q -f raw web01-data.raw 1G
& qemu-io -f raw -c "write -q -s $tar 512M $([Math]::Min($tarBytes, 64MB))" web01-data.raw
Write-Host ("Wrote {0:N0} MiB of real data into a 2 GiB and a 1 GiB disk." -f (($tarBytes + [Math]::Min($tarBytes, 64MB)) / 1MB))

Step 'A repository in a folder (an SMB or NFS share works the same)'
Show 'New-VmCheckpointRepository -Path $env:VMCHECKPOINT_REPOSITORY | Format-List Path, BlockSize'

Step 'First checkpoint: only allocated data is read, every block stored once, compressed'
Show 'Invoke-VmCheckpoint -Name web01 -DiskPath ./web01.qcow2, ./web01-data.raw | Format-List Id, VmName, Disks, VirtualSize, ReadBytes, ChangedBytes, StoredBytes, DurationSeconds'
Copy-Item web01.qcow2 web01-at-first.qcow2

Step 'The guest writes 8 MiB of new data in four places'
$random = Join-Path $WorkPath 'random.bin'
$bytes = [byte[]]::new(2MB)
foreach ($o in 100, 700, 1200, 1900) {
    [Random]::new($o).NextBytes($bytes); [IO.File]::WriteAllBytes($random, $bytes)
    & qemu-io -f qcow2 -c "write -q -s $random ${o}M 2M" web01.qcow2
}

Step 'Second checkpoint: only the changed blocks are stored, yet it restores on its own'
Show 'Invoke-VmCheckpoint -Name web01 -DiskPath ./web01.qcow2, ./web01-data.raw | Format-List Id, ParentId, ReadBytes, ChangedBytes, StoredBytes, DurationSeconds'
Show 'Get-VmCheckpoint -Name web01'
Show 'Get-CheckpointedVm'

Step 'Verify every block of every checkpoint'
Show 'Test-VmCheckpoint -ReadData'

Step 'Restore the first checkpoint as qcow2 and compare with the disk as it was (qemu-img compare)'
Show '$first = Get-VmCheckpoint -Name web01 | Select-Object -Last 1; $first | Restore-VmCheckpoint -Destination ./restored -DiskName web01'
Show 'qemu-img compare ./web01-at-first.qcow2 ./restored/web01.qcow2'
Show 'qemu-img check ./restored/web01.qcow2'

Step 'Every run is in the catalog''s job log'
Show 'Get-VmCheckpointJob'

Step 'Lose the catalog: it is rebuilt from the repository (a second host sees the same)'
Remove-Item $env:VMCHECKPOINT_CATALOG
Show 'Get-VmCheckpoint'

Step 'Retention: keep the newest checkpoint; blocks that only the removed one used are reclaimed (here almost none: the newer one holds the same disk)'
Show 'Remove-VmCheckpoint -KeepLast 1 -Confirm:$false'
Show 'Test-VmCheckpoint -ReadData'
Write-Host "`nDemo folder: $WorkPath (repository, catalog, restored disks)." -ForegroundColor Cyan
