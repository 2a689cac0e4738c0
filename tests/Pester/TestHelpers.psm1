# Helpers shared by the Pester tests: real images made with qemu-img/qemu-io, real repositories in
# temporary folders, real child processes. Nothing here mocks VmCheckpoint.
Set-StrictMode -Version 3.0

function Get-TestModulePath {
    if ($env:VMCHECKPOINT_TEST_MODULE) { return $env:VMCHECKPOINT_TEST_MODULE }
    Join-Path $PSScriptRoot '../../out/VmCheckpoint'
}

function New-TestFolder {
    $path = Join-Path ([IO.Path]::GetTempPath()) ("vmckpt-pester-" + [guid]::NewGuid().ToString('N').Substring(0, 10))
    New-Item -ItemType Directory -Path $path | Out-Null
    $path
}

# What a test file of libvirt VMs starts with: a work folder the qemu user can enter, a catalog and a folder
# repository in it, and the system libvirtd running. Returns the folder, the repository and libvirt's URI.
# -Path: that folder (made if missing) rather than a new temporary one (the bench scripts keep theirs).
function Initialize-LibvirtTestBed([string] $Path) {
    $work = if ($Path) { (New-Item -ItemType Directory $Path -Force).FullName } else { New-TestFolder }
    & chmod 755 $work
    $env:VMCHECKPOINT_CATALOG = Join-Path $work 'catalog.db'
    $repo = Join-Path $work 'repo'
    New-VmCheckpointRepository -Path $repo | Out-Null
    $uri = & bash (Join-Path $PSScriptRoot '../hosts/start-libvirt.sh')
    if ($LASTEXITCODE -ne 0) { throw "start-libvirt.sh failed ($LASTEXITCODE)" }
    $work, $repo, $uri
}

# Builds the tiny self-checking guest (tests/hosts/guest: a kernel and an initramfs) into a folder; returns the folder.
function Build-TestGuest([string] $Path) {
    $built = & bash (Join-Path $PSScriptRoot '../hosts/guest/build-guest.sh') $Path 2>&1
    if ($LASTEXITCODE -ne 0) { throw "build-guest.sh failed: $($built -join ' ')" }
    $Path
}

function Invoke-Qemu {
    param([Parameter(Mandatory)] [string] $Tool, [Parameter(ValueFromRemainingArguments)] [string[]] $Arguments)
    $output = & $Tool @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$Tool $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
    $output
}

# A file of random bytes, for qemu-io 'write -s' (patterns would deduplicate to nothing).
function New-RandomFile {
    param([string] $Path, [int] $Length, [int] $Seed)
    $bytes = [byte[]]::new($Length)
    [Random]::new($Seed).NextBytes($bytes)
    [IO.File]::WriteAllBytes($Path, $bytes)
    $Path
}

# Creates an image with qemu-img and writes random data with qemu-io at the given offsets (bytes, 1 MiB each unless -Length).
function New-TestImage {
    param(
        [Parameter(Mandatory)] [string] $Path,
        [Parameter(Mandatory)] [long] $Size,
        [ValidateSet('qcow2', 'raw')] [string] $Format = 'qcow2',
        [long[]] $Offsets = @(),
        [int] $Length = 1MB,
        [int] $Seed = 1
    )
    Invoke-Qemu qemu-img create -q -f $Format $Path $Size | Out-Null
    Write-TestData -Path $Path -Format $Format -Offsets $Offsets -Length $Length -Seed $Seed
    $Path
}

function Write-TestData {
    param([string] $Path, [string] $Format = 'qcow2', [long[]] $Offsets, [int] $Length = 1MB, [int] $Seed = 1)
    if ($Offsets.Count -eq 0) { return }
    $random = Join-Path ([IO.Path]::GetDirectoryName($Path)) ".random-$Seed-$Length"
    $commands = @()
    $i = 0
    foreach ($offset in $Offsets) {
        $file = New-RandomFile -Path "$random-$i" -Length $Length -Seed ([int](([long]$Seed * 100003 + $i) % [int]::MaxValue))
        $commands += @('-c', "write -q -s $file $offset $Length")
        $i++
    }
    Invoke-Qemu qemu-io -f $Format @commands $Path | Out-Null
    Remove-Item "$random-*"
}

# True when qemu-img compare says the two images hold the same guest bytes.
function Test-SameImage {
    param([string] $Expected, [string] $Actual)
    $output = & qemu-img compare $Expected $Actual 2>&1
    if ($LASTEXITCODE -ne 0) { Write-Host "qemu-img compare ${Expected} ${Actual}: $output" }
    $LASTEXITCODE -eq 0
}

function Test-ImageChecks {
    param([string] $Path)
    $output = & qemu-img check $Path 2>&1
    if ($LASTEXITCODE -ne 0) { Write-Host "qemu-img check ${Path}: $output" }
    $LASTEXITCODE -eq 0
}

# The command line of a fresh pwsh like this one (a dotnet tool runs as 'dotnet pwsh.dll').
function Get-PwshCommand {
    $exe = (Get-Process -Id $PID).Path
    if ([IO.Path]::GetFileNameWithoutExtension($exe) -eq 'dotnet') { return @($exe, [Environment]::GetCommandLineArgs()[0]) }
    @($exe)
}

# Starts a script in a child pwsh that imports the module; returns the Process.
# -CtrlC: the child answers SIGINT (Ctrl+C) even when this process was started with SIGINT ignored, as every command
# a non-interactive shell runs in the background is (and as CI may run the suite): pwsh, like any .NET program, keeps
# an ignored SIGINT ignored, so the child is started through `env --default-signal=INT`.
function Start-PwshScript {
    param([string] $Script, [string] $WorkingDirectory, [string] $StdOut, [string] $StdErr, [switch] $CtrlC)
    $cmd = Get-PwshCommand
    $full = "`$ErrorActionPreference = 'Stop'; Import-Module '$(Get-TestModulePath)'; " + $Script
    $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($full))
    $arguments = @($cmd | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-EncodedCommand', $encoded)
    $file = $cmd[0]
    if ($CtrlC) { $arguments = @('--default-signal=INT', $file) + $arguments; $file = 'env' }
    $p = @{ FilePath = $file; ArgumentList = $arguments; PassThru = $true; WorkingDirectory = $WorkingDirectory }
    if ($StdOut) { $p.RedirectStandardOutput = $StdOut }
    if ($StdErr) { $p.RedirectStandardError = $StdErr }
    Start-Process @p
}

function Get-RepositoryFiles {
    param([string] $Repository)
    Get-ChildItem $Repository -Recurse -File | Where-Object { $_.DirectoryName -notlike '*locks*' } |
        ForEach-Object { "$($_.FullName.Substring($Repository.Length)):$($_.Length)" } | Sort-Object
}


# ---- libvirt: real VMs of domain type qemu (software emulation). Without a guest OS they sit in their BIOS,
# running, which is all a disk checkpoint needs; writes go through qemu-io on the monitor, as a guest's would.

function Get-VirshUri { if ($env:VMCHECKPOINT_TEST_URI) { $env:VMCHECKPOINT_TEST_URI } else { 'qemu:///system' } }

function Invoke-Virsh {
    param([Parameter(ValueFromRemainingArguments)] [string[]] $Arguments)
    $output = & virsh -c (Get-VirshUri) @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "virsh $($Arguments -join ' ') failed: $output" }
    $output
}

# Defines and starts a VM whose disks are the given files (qcow2 or raw, by content).
function New-TestVm {
    param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [string[]] $DiskPath, [string] $Uri = (Get-VirshUri), [switch] $NoStart)
    $targets = 'vda', 'vdb', 'vdc', 'vdd'
    $disks = for ($i = 0; $i -lt $DiskPath.Count; $i++) {
        $format = if ((& qemu-img info --output=json $DiskPath[$i] | ConvertFrom-Json).format -eq 'qcow2') { 'qcow2' } else { 'raw' }
        "<disk type='file' device='disk'><driver name='qemu' type='$format'/><source file='$($DiskPath[$i])'/><target dev='$($targets[$i])' bus='virtio'/></disk>"
    }
    $escaped = [Security.SecurityElement]::Escape($Name)
    $xml = "<domain type='qemu'><name>$escaped</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><devices>$($disks -join '')</devices></domain>"
    $file = [IO.Path]::GetTempFileName()
    Set-Content $file $xml
    try { & virsh -c $Uri define $file | Out-Null; if ($LASTEXITCODE -ne 0) { throw "virsh define of $Name failed" } } finally { Remove-Item $file }
    if (-not $NoStart) { & virsh -c $Uri start $Name | Out-Null; if ($LASTEXITCODE -ne 0) { throw "virsh start of $Name failed" } }
}

function Remove-TestVm {
    param([string] $Name, [string] $Uri = (Get-VirshUri))
    & virsh -c $Uri destroy $Name 2>&1 | Out-Null
    & virsh -c $Uri undefine $Name --checkpoints-metadata --managed-save 2>&1 | Out-Null
}

# Writes random bytes into a running VM's disk at an offset, through qemu-io on the monitor (dirtying bitmaps
# as a guest write would). The data file must be readable by qemu (libvirt-qemu).
function Write-VmDisk {
    param([string] $Name, [int] $DiskIndex = 0, [long] $Offset, [int] $Length = 1MB, [int] $Seed = 1, [string] $Uri = (Get-VirshUri))
    $file = Join-Path ([IO.Path]::GetTempPath()) "vmckpt-write-$Seed-$Length.bin"
    New-RandomFile -Path $file -Length $Length -Seed $Seed | Out-Null
    & chmod 644 $file
    $device = "/machine/peripheral/virtio-disk$DiskIndex/virtio-backend"
    $out = & virsh -c $Uri qemu-monitor-command $Name --hmp "qemu-io -d $device `"write -s $file $Offset $Length`"" 2>&1
    if ($LASTEXITCODE -ne 0 -or "$out" -match 'rror') { throw "write into $Name failed: $out" }
}

# A copy of a running VM's disk as it is now. qemu is first told to flush the disk (qemu-io "flush" on the
# monitor): qcow2 metadata it still caches would otherwise be missing from the file the copy reads.
function Copy-VmDisk {
    param([string] $Name, [string] $Source, [string] $Destination, [int] $DiskIndex = 0, [string] $Uri = (Get-VirshUri))
    $out = & virsh -c $Uri qemu-monitor-command $Name --hmp "qemu-io -d /machine/peripheral/virtio-disk$DiskIndex/virtio-backend `"flush`"" 2>&1
    if ($LASTEXITCODE -ne 0 -or "$out" -match 'rror') { throw "flush of $Name disk $DiskIndex failed: $out" }
    & qemu-img convert -U -O qcow2 $Source $Destination
    if ($LASTEXITCODE -ne 0) { throw "copy of $Source failed" }
}

function Get-QemuPid([string] $Name) { [int](Get-Content "/run/libvirt/qemu/$Name.pid") }

# The domain's state as virsh says it ("running", "shut off (crashed)"), one line.
function Get-DomState([string] $Name, [string] $Uri = (Get-VirshUri)) {
    ((& virsh -c $Uri domstate $Name --reason 2>&1) | Where-Object { "$_".Trim() }) -join ' '
}

# Waits until the domain's state matches a pattern (libvirt notices a dead qemu asynchronously).
function Wait-DomState([string] $Name, [string] $Pattern, [string] $Uri = (Get-VirshUri), [int] $Seconds = 30) {
    $deadline = [DateTime]::UtcNow.AddSeconds($Seconds)
    while ((Get-DomState $Name $Uri) -notmatch $Pattern) {
        if ([DateTime]::UtcNow -gt $deadline) { throw "$Name is '$(Get-DomState $Name $Uri)', not '$Pattern', after $Seconds s" }
        Start-Sleep -Milliseconds 200
    }
    Get-DomState $Name $Uri
}

# ---- SMB: a real samba share on 127.0.0.1, mounted through smbnetfs (FUSE), started by tests/hosts/start-smb.sh.

function Get-TestSmbRoot { if ($env:VMCHECKPOINT_TEST_SMB_ROOT) { $env:VMCHECKPOINT_TEST_SMB_ROOT } else { '/var/tmp/vmckpt-smb' } }

# Starts samba and the smbnetfs mount if they are not running; returns the share's path inside the mount (Path)
# and the local folder samba stores the share in (Backing). Throws with start-smb.sh's reason when it cannot.
function Start-TestSmbShare {
    param([string] $Root = (Get-TestSmbRoot))
    $output = & bash (Join-Path $PSScriptRoot '../hosts/start-smb.sh') start $Root 2>&1
    if ($LASTEXITCODE -ne 0) { throw "The SMB share could not be started: $($output -join ' ')" }
    [pscustomobject]@{ Path = "$(@($output)[-1])"; Backing = Join-Path $Root 'share'; Root = $Root }
}

# Stops only smbd: the mount stays, and everything under it fails as an unreachable share does.
function Stop-TestSmbd {
    param([string] $Root = (Get-TestSmbRoot))
    $output = & bash (Join-Path $PSScriptRoot '../hosts/start-smb.sh') stop-smbd $Root 2>&1
    if ($LASTEXITCODE -ne 0) { throw "smbd could not be stopped: $($output -join ' ')" }
}


# ---- S3: Ceph's S3 gateway (radosgw) on 127.0.0.1 with a one-node Ceph, started by tests/hosts/start-s3.sh.
# Start-TestS3Gateway sets AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION in this process
# (child processes inherit them) and returns the endpoint and an s3cmd configuration: s3cmd is the independent client.
function Get-TestS3Root { if ($env:VMCHECKPOINT_TEST_S3_ROOT) { $env:VMCHECKPOINT_TEST_S3_ROOT } else { '/var/tmp/vmckpt-s3' } }

function Start-TestS3Gateway {
    param([string] $Root = (Get-TestS3Root))
    $output = & bash (Join-Path $PSScriptRoot '../hosts/start-s3.sh') start $Root 2>&1
    if ($LASTEXITCODE -ne 0) { throw "The S3 gateway could not be started: $($output -join ' ')" }
    foreach ($line in @($output)) {
        if ("$line" -match '^export (AWS_[A-Z_]+)=(.*)$') { Set-Item "env:$($Matches[1])" $Matches[2] }
    }
    [pscustomobject]@{ Endpoint = $env:AWS_ENDPOINT_URL; S3cfg = Join-Path $Root 's3cfg'; Root = $Root }
}

# Stops only radosgw: the cluster stays, and the endpoint refuses connections (an unreachable gateway).
function Stop-TestS3Gateway {
    param([string] $Root = (Get-TestS3Root))
    $output = & bash (Join-Path $PSScriptRoot '../hosts/start-s3.sh') stop-rgw $Root 2>&1
    if ($LASTEXITCODE -ne 0) { throw "radosgw could not be stopped: $($output -join ' ')" }
}

# s3cmd with the test gateway's configuration; throws when it fails.
function Invoke-S3cmd {
    param([Parameter(ValueFromRemainingArguments)] [string[]] $Arguments)
    $output = & s3cmd -c (Join-Path (Get-TestS3Root) 's3cfg') @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "s3cmd $($Arguments -join ' ') failed ($LASTEXITCODE): $output" }
    $output
}

# Every object under an s3:// address as s3cmd lists it: "<key under the address>:<bytes>", sorted; locks left out.
function Get-S3Objects {
    param([Parameter(Mandatory)] [string] $Address)
    $base = $Address.TrimEnd('/') + '/'
    @(Invoke-S3cmd ls -r $base) | ForEach-Object {
        if ("$_" -match '^\S+\s+\S+\s+(\d+)\s+(s3://\S+)$' -and $Matches[2].StartsWith($base)) {
            [pscustomobject]@{ Key = $Matches[2].Substring($base.Length); Length = [long]$Matches[1] }
        }
    } | Sort-Object Key
}


# The domain XML of the tiny self-checking guest (tests/hosts/guest): direct kernel boot, one qcow2 disk, its serial
# console appended to a file (append='on': libvirt would otherwise empty it at every start and restore), and the
# guest agent's channel. -BallastMiB fills that much of its memory with random data (gseq_ballast).
function New-TestGuestXml {
    param([Parameter(Mandatory)] [string] $Name, [Parameter(Mandatory)] [string] $Guest, [Parameter(Mandatory)] [string] $Disk,
          [Parameter(Mandatory)] [string] $Console, [int] $MemoryMiB = 128, [int] $BallastMiB = 0)
    $cmdline = 'console=ttyS0 quiet' + $(if ($BallastMiB) { " gseq_ballast=$BallastMiB" } else { '' })
    @"
<domain type='qemu'>
  <name>$([Security.SecurityElement]::Escape($Name))</name>
  <memory unit='MiB'>$MemoryMiB</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$Guest/vmlinuz</kernel>
    <initrd>$Guest/initrd.gz</initrd>
    <cmdline>$cmdline</cmdline>
  </os>
  <features><acpi/></features>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$Disk'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='$Console' append='on'/><target port='0'/></serial>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices>
</domain>
"@
}

# Runs $Action while a thread samples the tiny guest's count on its console every 20 ms; returns the action's result,
# the longest time the count stood still (what the guest saw of any stop) and how long the action took.
function Measure-GuestStill {
    param([Parameter(Mandatory)] [string] $Console, [Parameter(Mandatory)] [scriptblock] $Action)
    # The sampler runs in a runspace of its own (not a job: nothing to find again in a job repository).
    $stop = [System.Threading.ManualResetEventSlim]::new($false)
    $sampler = [powershell]::Create().AddScript({
        param($console, $stop)
        $last = -1; $since = [Diagnostics.Stopwatch]::StartNew(); $longest = 0.0
        while (-not $stop.IsSet) {
            $line = Get-Content $console -Tail 40 -ErrorAction SilentlyContinue | ForEach-Object { $_.TrimEnd("`r") } | Where-Object { $_ -match '^VMCKG COUNT \d+$' } | Select-Object -Last 1
            $n = if ($line) { [long]($line -split ' ')[-1] } else { -1 }
            if ($n -ne $last) { $longest = [Math]::Max($longest, $since.Elapsed.TotalSeconds); $since.Restart(); $last = $n }
            Start-Sleep -Milliseconds 20
        }
        [Math]::Max($longest, $since.Elapsed.TotalSeconds)
    }).AddArgument($Console).AddArgument($stop)
    $running = $sampler.BeginInvoke()
    $clock = [Diagnostics.Stopwatch]::StartNew()
    try { $result = & $Action }
    finally {
        $seconds = $clock.Elapsed.TotalSeconds
        Start-Sleep -Milliseconds 1500
        $stop.Set()
        $still = @($sampler.EndInvoke($running))[-1]
        $sampler.Dispose()
    }
    [pscustomobject]@{ Result = $result; Still = $still; Seconds = $seconds }
}

# The two-writers scenario every repository backend runs (Share.Tests, S3.Tests): two processes checkpoint two new
# 16 MiB images into -Repository at once (each with its own catalog, inheriting this process's environment); both
# must succeed, restore equal to their images, and leave every checkpoint healthy. -AlsoThere: the VMs already in it.
function Assert-TwoWritersLoseNothing([string] $Work, [string] $Repository, [string[]] $AlsoThere) {
    $pairs = @(
        @{ Name = 'app'; Path = (New-TestImage -Path (Join-Path $Work 'app.qcow2') -Size 16MB -Offsets 0, 5MB, 6MB, 12MB -Seed 21) }
        @{ Name = 'db'; Path = (New-TestImage -Path (Join-Path $Work 'db.qcow2') -Size 16MB -Offsets 1MB, 2MB, 8MB, 15MB -Seed 22) }
    )
    $before = @(Test-VmCheckpoint -Repository $Repository).Count
    $children = foreach ($p in $pairs) {
        Start-PwshScript -WorkingDirectory $Work -StdOut (Join-Path $Work "$($p.Name).out") -StdErr (Join-Path $Work "$($p.Name).err") -Script @"
`$env:VMCHECKPOINT_CATALOG = '$(Join-Path $Work "catalog-$($p.Name).db")'
Invoke-VmCheckpoint -Name '$($p.Name)' -DiskPath '$($p.Path)' -Repository '$Repository' | Out-Null
"@
    }
    foreach ($child in $children) {
        $child.WaitForExit()
        $child.ExitCode | Should -Be 0 -Because (Get-Content (Join-Path $Work '*.err') -Raw)
    }
    foreach ($p in $pairs) {
        $r = Restore-VmCheckpoint -Name $p.Name -Destination (Join-Path $Work "concurrent-$($p.Name)") -Repository $Repository
        Test-SameImage $p.Path $r.Path | Should -BeTrue -Because "$($p.Name) restores"
    }
    (Get-CheckpointedVm -Repository $Repository).Name | Sort-Object | Should -Be (@('app', 'db') + $AlsoThere | Sort-Object)
    $verdicts = Test-VmCheckpoint -Repository $Repository -ReadData
    @($verdicts).Count | Should -Be ($before + 2)
    $verdicts.Status | Sort-Object -Unique | Should -Be 'Healthy'
}

# The share and S3 scenario in an encrypted repository: two checkpoints, two writers at once from two processes (which
# get the password from the environment they inherit), reclaim, verify with -ReadData, restore and compare; and no VM
# name in any object name. $ObjectNames lists the repository's object names relative to it.
function Assert-EncryptedScenario([string] $Work, [string] $Repository, [scriptblock] $ObjectNames) {
    $folder = Join-Path $Work 'encrypted'
    New-Item -ItemType Directory $folder -Force | Out-Null
    $env:VMCHECKPOINT_PASSWORD = 'the password of ' + $Repository
    try {
        (New-VmCheckpointRepository -Path $Repository -Encrypt).Encrypted | Should -BeTrue
        $image = New-TestImage -Path (Join-Path $folder 'web.qcow2') -Size 16MB -Offsets 0, 3MB, 9MB -Seed 31
        $first = Invoke-VmCheckpoint -Name web -DiskPath $image -Repository $Repository
        Write-TestData -Path $image -Offsets 3MB, 9MB -Seed 32
        $second = Invoke-VmCheckpoint -Name web -DiskPath $image -Repository $Repository
        $second.ChangedBytes | Should -Be 2MB
        Assert-TwoWritersLoseNothing -Work $folder -Repository $Repository -AlsoThere web
        $result = Remove-VmCheckpoint -Name web -KeepLast 1 -Repository $Repository -LockTimeout 30 -Confirm:$false
        $result.RemovedIds | Should -Be $first.Id
        $result.Reclaim.Completed | Should -BeTrue
        $r = Restore-VmCheckpoint -Name web -Destination (Join-Path $folder 'restored') -Repository $Repository
        Test-SameImage $image $r.Path | Should -BeTrue
        (Test-VmCheckpoint -Repository $Repository -ReadData).Status | Sort-Object -Unique | Should -Be 'Healthy'
        $names = @(& $ObjectNames)
        $names.Count | Should -BeGreaterThan 4
        $names | Where-Object { $_ -match 'web|app' } | Should -BeNullOrEmpty
        @($names | Where-Object { $_ -like 'keys/*.key' }).Count | Should -Be 1
    } finally { Remove-Item Env:VMCHECKPOINT_PASSWORD -ErrorAction SilentlyContinue }
}

Export-ModuleMember -Function *
