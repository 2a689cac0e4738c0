<#
.SYNOPSIS
    Memory checkpoints of a guest whose memory is in use, in one run: what each costs the guest (how long it stood
    still, as the guest itself saw it) and what each stores, for VmCheckpoint's live route, its older save route
    (VMCHECKPOINT_MEMORY_ROUTE=save) and plain `virsh save` + `virsh restore` on the same guest.
.DESCRIPTION
    The tiny self-checking guest (tests/hosts/guest) with -MemoryMiB of RAM holding -BallastMiB of random data in
    tmpfs. Its counts, sampled every 20 ms from the host, give the longest time it stood still during each step; an
    idle window of the same length is the floor (a busy two-core host delays a TCG guest too).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [int] $MemoryMiB = 1024,
    [int] $BallastMiB = 768,
    [string] $WorkPath = (Join-Path '/var/tmp' ('vmcheckpoint-membench-' + (Get-Date -Format 'yyyyMMdd-HHmmss')))
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$module = (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot '../tests/Pester/TestHelpers.psm1') -Force
Import-Module $module -Force
$WorkPath, $repo, $null = Initialize-LibvirtTestBed -Path $WorkPath
$guest = Build-TestGuest (Join-Path $WorkPath 'guest')
$name = 'membench-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
$disk = Join-Path $WorkPath 'disk.qcow2'
& qemu-img create -q -f qcow2 $disk 16M; & chmod 666 $disk
$console = Join-Path $WorkPath 'console'
New-TestGuestXml -Name $name -Guest $guest -Disk $disk -Console $console -MemoryMiB $MemoryMiB -BallastMiB $BallastMiB | Set-Content (Join-Path $WorkPath 'domain.xml')
Invoke-Virsh define (Join-Path $WorkPath 'domain.xml') | Out-Null
Invoke-Virsh start $name | Out-Null

function Get-LastCount {
    $l = Get-Content $console -Tail 40 -ErrorAction SilentlyContinue | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -match '^VMCKG COUNT \d+$' } | Select-Object -Last 1
    if ($l) { [long]($l -split ' ')[-1] } else { 0 }
}
try {
    Write-Host "== Guest: $MemoryMiB MiB of RAM, $BallastMiB MiB of random data in tmpfs (filling it takes a while under TCG)"
    $deadline = [DateTime]::UtcNow.AddMinutes(5)
    while ((Get-LastCount) -lt 5) { if ([DateTime]::UtcNow -gt $deadline) { throw 'the guest did not start counting' }; Start-Sleep -Milliseconds 500 }
    $rows = [System.Collections.Generic.List[object]]::new()
    function Add-Row([string] $Route, [string] $Step, $m, $pause, $stored) {
        $rows.Add([pscustomobject]@{ Route = $Route; Step = $Step; Still = $m.Still; Pause = $pause; StoredMiB = $stored / 1MB; Seconds = $m.Seconds })
        Write-Host ("  {0,-28} {1,-7} guest still {2,6:N2} s  pause {3,7}  stored {4,8:N1} MiB  took {5,6:N1} s" -f $Route, $Step, $m.Still, $(if ($null -ne $pause) { '{0:N3} s' -f $pause } else { '-' }), ($stored / 1MB), $m.Seconds)
    }
    $idle = Measure-GuestStill -Console $console -Action { Start-Sleep -Seconds 5 }
    Add-Row 'idle (the floor)' '-' $idle $null 0
    foreach ($step in 'first', 'second') {
        $m = Measure-GuestStill -Console $console -Action { Invoke-VmCheckpoint -Name $name -IncludeMemory -Repository $repo }
        Add-Row 'VmCheckpoint (live snapshot)' $step $m $m.Result.PauseSeconds $m.Result.StoredBytes
        Start-Sleep -Seconds 5
    }
    $env:VMCHECKPOINT_MEMORY_ROUTE = 'save'
    $m = Measure-GuestStill -Console $console -Action { Invoke-VmCheckpoint -Name $name -IncludeMemory -Repository $repo }
    Remove-Item Env:VMCHECKPOINT_MEMORY_ROUTE
    Add-Row 'VmCheckpoint (save route)' 'third' $m $m.Result.PauseSeconds $m.Result.StoredBytes
    $save = Join-Path $WorkPath 'virsh.save'
    $m = Measure-GuestStill -Console $console -Action { Invoke-Virsh save $name $save | Out-Null; Invoke-Virsh restore $save | Out-Null }
    Add-Row 'virsh save + restore' '-' $m $null (Get-Item $save).Length

    $live = @($rows | Where-Object Route -like '*live*')
    $plain = $rows | Where-Object Route -like 'virsh*'
    Write-Host 'Results'
    Write-Host ("  stop the guest saw: live {0:N2} s and {1:N2} s, virsh save+restore {2:N2} s (idle floor {3:N2} s); ratio {4:N2}x" -f $live[0].Still, $live[1].Still, $plain.Still, $idle.Still, ($live[1].Still / $plain.Still))
    Write-Host ("  stored: first {0:N0} MiB, second {1:N0} MiB; a save file is {2:N0} MiB every time; ratio {3:N3}x" -f $live[0].StoredMiB, $live[1].StoredMiB, $plain.StoredMiB, ($live[1].StoredMiB / $plain.StoredMiB))
    Write-Host 'Targets'
    Write-Host ("  {0}  libvirt's pause <= 0.2 s per checkpoint with memory" -f $(if (@($live | Where-Object { $_.Pause -gt 0.2 }).Count -eq 0) { 'PASS' } else { 'MISS' }))
    Write-Host ("  {0}  second checkpoint stores at most a quarter of the RAM" -f $(if ($live[1].StoredMiB -le $MemoryMiB / 4) { 'PASS' } else { 'MISS' }))
}
finally {
    # Whatever happened, the 1 GiB guest does not keep the host's cores busy.
    Remove-TestVm -Name $name
    Remove-Item $WorkPath -Recurse -Force -ErrorAction SilentlyContinue
}
