<#
.SYNOPSIS
    The main job on real data: a VM's two disks (a qcow2 made by qemu-img holding real files, and a raw disk)
    checkpointed into a folder repository, changed, checkpointed again, verified, restored and compared, and into an
    encrypted repository. Then the
    product's main job on a running VM: the tiny self-checking guest (tests/hosts/guest) checkpointed live with
    its memory, killed (kill -9 of its qemu), and brought back by Watch-VmHealth counting on from the checkpoint.
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

Step 'An encrypted repository (for storage someone else holds): nothing in it names the VM or shows its data, and a wrong password reads nothing'
$env:VMCHECKPOINT_PASSWORD = 'demo password: keep yours somewhere safe'
Show 'New-VmCheckpointRepository -Path ./encrypted -Encrypt | Format-List Path, Encryption'
Show 'Invoke-VmCheckpoint -Name web01 -DiskPath ./web01.qcow2, ./web01-data.raw -Repository ./encrypted | Format-List Id, VmName, StoredBytes, DurationSeconds'
Show '"Files naming web01: $(@(Get-ChildItem ./encrypted -Recurse | Where-Object Name -like ''*web01*'').Count); files holding the text web01: $(@(& grep -rlaF web01 ./encrypted).Count)"'
Remove-Item Env:VMCHECKPOINT_PASSWORD
Show 'try { Get-VmCheckpoint -Repository ./encrypted -Password (ConvertTo-SecureString ''wrong'' -AsPlainText -Force) } catch { "{0}: {1}" -f $_.CategoryInfo.Category, $_.Exception.Message }'

# --- A running VM: live checkpoint with memory, a crash, and the watcher ---
$root = Split-Path $PSScriptRoot -Parent
Step 'A running VM: the tiny self-checking guest on this host''s libvirt (256 MiB of RAM, 128 MiB of it random data); it counts on its serial console'
$uri = & bash (Join-Path $root 'tests/hosts/start-libvirt.sh')
$guest = Join-Path $WorkPath 'guest'
& bash (Join-Path $root 'tests/hosts/guest/build-guest.sh') $guest | Out-Null
if ($LASTEXITCODE) { throw 'build-guest.sh failed' }
& chmod 755 $WorkPath
$vm = 'demo-guest'
& virsh -c $uri destroy $vm 2>$null | Out-Null
& virsh -c $uri undefine $vm --checkpoints-metadata --nvram 2>$null | Out-Null
$disk = Join-Path $WorkPath 'demo-guest.qcow2'
$console = Join-Path $WorkPath 'demo-guest.console'
& qemu-img create -q -f qcow2 $disk 16M
& chmod 666 $disk
$cmdline = 'console=ttyS0 quiet gseq_ballast=128'
@"
<domain type='qemu'>
  <name>$vm</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>$guest/vmlinuz</kernel><initrd>$guest/initrd.gz</initrd><cmdline>$cmdline</cmdline></os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$disk'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='$console' append='on'/><target port='0'/></serial>
  </devices>
</domain>
"@ | Set-Content (Join-Path $WorkPath 'demo-guest.xml')
& virsh -c $uri define (Join-Path $WorkPath 'demo-guest.xml') | Out-Null
& virsh -c $uri start $vm | Out-Null
function Get-GuestCount {
    $line = Get-Content $console -ErrorAction SilentlyContinue | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -match '^VMCKG COUNT \d+$' } | Select-Object -Last 1
    if ($line) { [long]($line -split ' ')[-1] } else { 0 }
}
$deadline = [DateTime]::UtcNow.AddMinutes(3)
while ((Get-GuestCount) -lt 3) {
    if ([DateTime]::UtcNow -gt $deadline) { throw "The demo guest did not start counting: $(Get-Content $console -Tail 3)" }
    Start-Sleep -Milliseconds 500
}
Write-Host "The guest counts: $(Get-GuestCount)"

Step 'Checkpoint it live, with its memory: the guest stands still for the PauseSeconds shown, then counts on'
$beforeCheckpoint = Get-GuestCount
Show "`$live = Invoke-VmCheckpoint -Name $vm -IncludeMemory; `$live | Format-List VmName, Id, IncludesMemory, MemoryBytes, PauseSeconds, StoredBytes, DurationSeconds"
$afterCheckpoint = Get-GuestCount
Start-Sleep -Seconds 2
Write-Host "Counting on after the checkpoint: $(Get-GuestCount)"

Step 'Crash it: kill -9 of its qemu'
$qemuPid = [int](Get-Content "/run/libvirt/qemu/$vm.pid")
& kill -9 $qemuPid
$deadline = [DateTime]::UtcNow.AddSeconds(15)
while ((& virsh -c $uri domstate $vm) -match 'running' -and [DateTime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 200 }
Show "virsh -c $uri domstate $vm --reason"

Step 'Watch-VmHealth brings it back from its latest checkpoint, resumed from memory (by default it first restarts a crashed VM on its own disks)'
$clock = [Diagnostics.Stopwatch]::StartNew()
Show "Watch-VmHealth -Name $vm -Once -Action RestoreLatest -RestorePath $WorkPath/restored-live"
$seen = (Get-Content $console).Count
$deadline = [DateTime]::UtcNow.AddSeconds(60)
while (@(Get-Content $console | Select-Object -Skip $seen | Where-Object { $_ -match '^VMCKG COUNT ' }).Count -lt 2) {
    if ([DateTime]::UtcNow -gt $deadline) { throw 'The restored guest did not count again within 60 s.' }
    Start-Sleep -Milliseconds 200
}
$after = @(Get-Content $console | Select-Object -Skip $seen | ForEach-Object { $_.TrimEnd("`r") })
$firstCount = ($after | Where-Object { $_ -match '^VMCKG COUNT ' } | Select-Object -First 1)
$verdict = if ($after -match '^VMCKG (BOOT|MISMATCH)') { 'but it rebooted or found its disk and memory apart' } else { 'resumed from memory: no reboot, memory and disk of one instant' }
Write-Host ("Counting again {0:0.0} s after the watcher started, from '{1}': the checkpoint's instant fell between counts {2} and {3}; {4}." -f
    $clock.Elapsed.TotalSeconds, $firstCount, $beforeCheckpoint, $afterCheckpoint, $verdict)
Show 'Get-VmHealthEvent -Last 3'
& virsh -c $uri destroy $vm 2>$null | Out-Null
& virsh -c $uri undefine $vm --checkpoints-metadata --nvram 2>$null | Out-Null
Write-Host "`nDemo folder: $WorkPath (repository, catalog, restored disks)." -ForegroundColor Cyan
