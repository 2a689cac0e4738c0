<#
.SYNOPSIS
    Instant restore against the plain restore, in one run: how long after kill -9 the self-checking guest counts again,
    resumed from memory, each way, and how long until an instant restore's data is home.
.DESCRIPTION
    The tiny self-checking guest (tests/hosts/guest) on a -DiskGiB qcow2 disk holding -DataGiB of random data. One
    checkpoint with memory; then kill -9 and Restore-VmCheckpoint -ResumeMemory (writes every disk first), and kill -9
    again and Restore-VmCheckpoint -Instant -ResumeMemory (runs at once from the repository, the data copied home by
    libvirt's block pull). "Counting" is the first new count line on the guest's console after the restore began.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [int] $DiskGiB = 4,
    [int] $DataGiB = 2,
    [string] $WorkPath = (Join-Path '/var/tmp' ('vmcheckpoint-instbench-' + (Get-Date -Format 'yyyyMMdd-HHmmss')))
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version 3.0
$module = (Resolve-Path $ModulePath).Path
Import-Module (Join-Path $PSScriptRoot '../tests/Pester/TestHelpers.psm1') -Force
Import-Module $module -Force
$WorkPath, $repo, $null = Initialize-LibvirtTestBed -Path $WorkPath
$guest = Build-TestGuest (Join-Path $WorkPath 'guest')
$name = 'inst-bench-' + [guid]::NewGuid().ToString('N').Substring(0, 6)
$disk = Join-Path $WorkPath 'disk.qcow2'
& qemu-img create -q -f qcow2 $disk "$($DiskGiB)G"
# Random data from 8 MiB on (the guest only writes its first two sectors), 256 MiB at a time.
$chunk = Join-Path $WorkPath 'chunk.bin'
for ($i = 0; $i -lt $DataGiB * 4; $i++) {
    & head -c 256M /dev/urandom > $chunk
    & qemu-io -f qcow2 -c "write -s $chunk $(8 + 256 * $i)M 256M" $disk | Out-Null
}
Remove-Item $chunk
& chmod 666 $disk
$console = Join-Path $WorkPath 'console'
New-TestGuestXml -Name $name -Guest $guest -Disk $disk -Console $console | Set-Content (Join-Path $WorkPath 'domain.xml')
Invoke-Virsh define (Join-Path $WorkPath 'domain.xml') | Out-Null
Invoke-Virsh start $name | Out-Null

function Get-Lines { @(Get-Content $console -ErrorAction SilentlyContinue | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -match '^VMCKG ' }) }
function Wait-NewLine([int] $After, [Diagnostics.Stopwatch] $Clock) {
    while ((Get-Lines).Count -le $After) { if ($Clock.Elapsed.TotalSeconds -gt 600) { throw 'the guest does not count' }; Start-Sleep -Milliseconds 20 }
    $Clock.Elapsed.TotalSeconds
}
function Stop-Hard {
    & kill -9 (Get-QemuPid $name)
    Wait-DomState $name 'crashed' | Out-Null
}
try {
    while (@(Get-Lines | Where-Object { $_ -match '^VMCKG COUNT' }).Count -lt 3) { Start-Sleep -Milliseconds 200 }
    $took = Measure-Command { $script:cp = Invoke-VmCheckpoint -Name $name -IncludeMemory -Repository $repo }
    $dataBytes = (((& qemu-img map -U --output=json $disk) -join "") | ConvertFrom-Json | Where-Object data | Measure-Object -Property length -Sum).Sum

    Stop-Hard
    $lines = (Get-Lines).Count
    $clock = [Diagnostics.Stopwatch]::StartNew()
    Restore-VmCheckpoint -Name $name -ResumeMemory -Force -Destination (Join-Path $WorkPath 'plain') -Repository $repo | Out-Null
    $plainReturned = $clock.Elapsed.TotalSeconds
    $plain = Wait-NewLine $lines $clock

    Stop-Hard
    $lines = (Get-Lines).Count
    $clock = [Diagnostics.Stopwatch]::StartNew()
    # Its verbose lines say where the time goes (export server, memory state, overlays, resume).
    $steps = Restore-VmCheckpoint -Name $name -Instant -ResumeMemory -Force -Destination (Join-Path $WorkPath 'instant') -Repository $repo -Verbose 4>&1 |
        Where-Object { $_ -is [System.Management.Automation.VerboseRecord] -and ($_.Message -match ' after [\d.]+ s$' -or $_.Message -like 'Resumed *') } | ForEach-Object Message
    $instantReturned = $clock.Elapsed.TotalSeconds
    $instant = Wait-NewLine $lines $clock
    while ((Get-VmCheckpointJob -Name $name | Where-Object Kind -eq InstantRestore | Select-Object -First 1).Result -eq 'Running') {
        if ($clock.Elapsed.TotalMinutes -gt 30) { throw 'the copy did not finish in 30 minutes' }
        Start-Sleep -Milliseconds 250
    }
    $homeSeconds = $clock.Elapsed.TotalSeconds
    $job = Get-VmCheckpointJob -Name $name | Where-Object Kind -eq InstantRestore | Select-Object -First 1
    $mismatch = @(Get-Lines | Where-Object { $_ -like 'VMCKG MISMATCH*' }).Count

    Write-Host ("Guest with a {0} GiB disk holding {1:N2} GiB of data, 128 MiB of RAM; checkpoint with memory took {2:N1} s" -f $DiskGiB, ($dataBytes / 1GB), $took.TotalSeconds)
    Write-Host ("Plain restore -ResumeMemory:   returned {0,6:N2} s, counting {1,6:N2} s after the restore began" -f $plainReturned, $plain)
    Write-Host ("Instant restore -ResumeMemory: returned {0,6:N2} s, counting {1,6:N2} s  ({2:N2}x the plain restore)" -f $instantReturned, $instant, ($instant / $plain))
    foreach ($step in $steps) { Write-Host "  instant: $step" }
    Write-Host ("Instant restore: data home (job {0}) {1:N1} s after the restore began; mismatches seen by the guest: {2}" -f $job.Result, $homeSeconds, $mismatch)
    [pscustomobject]@{ DataBytes = $dataBytes; PlainSeconds = $plain; InstantSeconds = $instant; Ratio = $instant / $plain; HomeSeconds = $homeSeconds; Mismatches = $mismatch }
}
finally {
    Remove-TestVm -Name $name
    Get-VmCheckpointJob | Out-Null   # finishes or abandons what is left of the copy
}
