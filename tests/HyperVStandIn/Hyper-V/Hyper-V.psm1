# A STAND-IN of the Hyper-V PowerShell module and of the CIM calls on root\virtualization\v2 that VmCheckpoint
# makes, for tests on Linux, where Hyper-V cannot run. It is not Hyper-V: it follows Microsoft's documented
# behaviour of each command on real files, and only as far as VmCheckpoint uses it.
#  - VMs are JSON records under $env:HYPERV_STANDIN_ROOT/<computer>/ (-ComputerName picks another "host").
#  - Disks are real VHDX files. Checkpoint-VM (and a recovery CreateSnapshot) really creates empty .avhdx children
#    with VmCheckpoint's VHDX writer and switches the VM's drives to them; guest writes (Write-StandInGuestData, the
#    stand-in's guest) land in the child while one exists (the child is rewritten), else in the .vhdx (qemu-io);
#    Remove-VMSnapshot and ConvertToReferencePoint really merge the children's writes into their parents.
#  - GetVirtualDiskChanges answers the ranges really written since a reference point's RCT id, from the log of
#    guest writes; it answers at most 16 MiB of the asked range per call, as the real method may answer for less.
#  - A standard checkpoint of a running VM saves a memory state file (.vmrs) that holds the guest's memory counter;
#    a VM imported with it is Saved, and Start-VM resumes it with that counter.
# Limitations, on purpose: one checkpoint of a VM at a time; CIM objects are plain objects, not CimInstances;
# WMI methods complete synchronously (ReturnValue 0).
Set-StrictMode -Version 3.0

$script:Rct = 'rct'

function Get-StandInRoot([string] $ComputerName) {
    if (-not $env:HYPERV_STANDIN_ROOT) { throw 'The Hyper-V stand-in needs $env:HYPERV_STANDIN_ROOT.' }
    $name = if ($ComputerName) { $ComputerName } else { 'localhost' }
    $dir = Join-Path $env:HYPERV_STANDIN_ROOT "$name/vms"
    if (-not (Test-Path $dir)) { New-Item -ItemType Directory -Path $dir -Force | Out-Null }
    $dir
}

# A "remote host" that needs an account: $env:HYPERV_STANDIN_ROOT/<computer>/account holds the user name it takes.
# Calls without that credential fail as Hyper-V's do for a host that refuses the current user.
function Assert-StandInAccess([string] $ComputerName, $Credential) {
    if (-not $ComputerName) { return }
    $account = Join-Path $env:HYPERV_STANDIN_ROOT "$ComputerName/account"
    if (-not (Test-Path $account)) { return }
    $wanted = (Get-Content -Raw $account).Trim()
    if (-not $Credential -or $Credential.UserName -ne $wanted) {
        throw "You do not have the required permission to complete this task. Contact the administrator of the authorization policy for the computer '$ComputerName'."
    }
}

# New-CimSession: a session is the computer and the account it was opened with.
function New-CimSession {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    [pscustomobject]@{ ComputerName = $ComputerName; Credential = $Credential; Protocol = 'WSMan' }
}

function Read-Record([string] $ComputerName) {
    foreach ($f in Get-ChildItem (Get-StandInRoot $ComputerName) -Filter *.json) {
        $r = Get-Content -Raw $f.FullName | ConvertFrom-Json -AsHashtable
        $r.File = $f.FullName
        $r.ComputerName = $ComputerName
        $r
    }
}

function Save-Record($Record) {
    $file = Join-Path (Get-StandInRoot $Record.ComputerName) "$($Record.Id).json"
    $copy = @{} + $Record
    $copy.Remove('File'); $copy.Remove('ComputerName')
    $copy | ConvertTo-Json -Depth 8 | Set-Content -Path "$file.tmp"
    Move-Item "$file.tmp" $file -Force
}

function Find-Record([string] $Name, [string] $ComputerName, [switch] $Required) {
    $r = @(Read-Record $ComputerName | Where-Object { $_.Name -eq $Name })
    if ($r.Count -eq 0 -and $Required) {
        $host_ = if ($ComputerName) { $ComputerName } else { 'localhost' }
        throw [System.Management.Automation.ItemNotFoundException]::new("Hyper-V was unable to find a virtual machine with name `"$Name`" on $host_.")
    }
    if ($r.Count -gt 0) { $r[0] }
}

function Get-Slot($Drive) { "$($Drive.ControllerType)$($Drive.ControllerNumber):$($Drive.ControllerLocation)" }

function ConvertTo-Drive($Drive, [string] $VMName) {
    [pscustomobject]@{
        VMName = $VMName; ControllerType = $Drive.ControllerType; ControllerNumber = [int]$Drive.ControllerNumber
        ControllerLocation = [int]$Drive.ControllerLocation; Path = $Drive.Path
    }
}

function ConvertTo-Vm($r) {
    [pscustomobject]@{
        Name = $r.Name; Id = [guid]$r.Id; VMId = [guid]$r.Id; State = $r.State; Heartbeat = $r.Heartbeat; Version = $r.Version
        Generation = [int]$r.Generation; CheckpointType = $r.CheckpointType; Path = $r.Path
        ConfigurationLocation = $r.Path; SnapshotFileLocation = $r.Path; ComputerName = $r.ComputerName
        HardDrives = @($r.HardDrives | ForEach-Object { ConvertTo-Drive $_ $r.Name })
        # The stand-in's guest: what tests read to tell a resume from a boot.
        MemoryCounter = [int]$r.MemoryCounter; BootCount = [int]$r.BootCount; ResumedFromSavedState = [bool]$r.ResumedFromSavedState
        # The consistency level of the last recovery checkpoint (1: application-consistent), for tests to read.
        LastConsistencyLevel = $r["LastConsistencyLevel"]
    }
}

function ConvertTo-Snapshot($s, $r) {
    [pscustomobject]@{
        Id = [guid]$s.Id; Name = $s.Name; VMName = $r.Name; VMId = [guid]$r.Id; SnapshotType = $s.SnapshotType
        CreationTime = [datetime]$s.CreationTime; ComputerName = $r.ComputerName
        HardDrives = @($s.HardDrives | ForEach-Object { ConvertTo-Drive $_ $r.Name })
    }
}

function New-GuestBytes([int] $Seed, [int] $Length) {
    $bytes = [byte[]]::new($Length)
    [Random]::new($Seed).NextBytes($bytes)
    $bytes
}

function Invoke-QemuIo([string] $Path, [long] $Offset, [byte[]] $Data) {
    $tmp = [IO.Path]::GetTempFileName()
    try {
        [IO.File]::WriteAllBytes($tmp, $Data)
        $out = & qemu-io -f vhdx -c "write -q -s $tmp $Offset $($Data.Length)" $Path 2>&1
        if ($LASTEXITCODE -ne 0) { throw "qemu-io write into $Path failed: $out" }
    }
    finally { Remove-Item $tmp -ErrorAction SilentlyContinue }
}

# The guest writes of a drive since a sequence number, oldest first.
function Get-WritesSince($r, [string] $Slot, [long] $Seq) {
    @($r.Writes | Where-Object { $_.Slot -eq $Slot -and [long]$_.Seq -gt $Seq } | Sort-Object { [long]$_.Seq })
}

# A child .avhdx holds exactly the writes made since its checkpoint: rewritten whole with VmCheckpoint's VHDX writer.
function Write-Child([string] $Child, [string] $Parent, $Writes) {
    $ranges = [System.Collections.Generic.List[object]]::new()
    foreach ($w in ($Writes | Sort-Object { [long]$_.Offset })) {
        $o = [long]$w.Offset; $e = $o + [long]$w.Length
        if ($ranges.Count -gt 0 -and $o -le $ranges[$ranges.Count - 1].End) {
            if ($e -gt $ranges[$ranges.Count - 1].End) { $ranges[$ranges.Count - 1].End = $e }
        } else { $ranges.Add([pscustomobject]@{ Start = $o; End = $e }) }
    }
    $buffers = foreach ($range in $ranges) { [pscustomobject]@{ Start = $range.Start; Data = [byte[]]::new($range.End - $range.Start) } }
    foreach ($w in $Writes) {
        $data = New-GuestBytes ([int]$w.Seed) ([int]$w.Length)
        foreach ($b in $buffers) {
            $from = [Math]::Max([long]$w.Offset, $b.Start); $to = [Math]::Min([long]$w.Offset + [long]$w.Length, $b.Start + $b.Data.Length)
            if ($to -gt $from) { [Array]::Copy($data, $from - [long]$w.Offset, $b.Data, $from - $b.Start, $to - $from) }
        }
    }
    $tmp = "$Child.tmp"
    $writer = [VmCheckpoint.Core.Disks.DiskImage]::CreateDifferencingVhdx($tmp, $Parent)
    try {
        foreach ($b in $buffers) { $writer.Write($b.Start, $b.Data, 0, $b.Data.Length) }
        $writer.Complete()
    }
    finally { $writer.Dispose() }
    Move-Item $tmp $Child -Force
}

# Takes a checkpoint: every drive's file is frozen and the VM goes on on a new, empty .avhdx child.
function New-StandInSnapshot($r, [string] $Name, [string] $Type, [bool] $WithMemory) {
    if ($r.RefuseCheckpoints) {
        throw "Checkpoint operation failed. '$($r.Name)' could not initiate a checkpoint operation: The operation cannot be performed while the object is in its current state. (0x800423F4)"
    }
    if (@($r.Snapshots).Count -gt 0) { throw "The Hyper-V stand-in keeps one checkpoint of a VM at a time; '$($r.Name)' has one." }
    $id = [guid]::NewGuid()
    $frozen = @()
    $made = @()
    try {
        foreach ($d in $r.HardDrives) {
            $child = Join-Path ([IO.Path]::GetDirectoryName($d.Path)) ("{0}_{1}.avhdx" -f [IO.Path]::GetFileNameWithoutExtension($d.Path), $id.ToString().ToUpperInvariant())
            $writer = [VmCheckpoint.Core.Disks.DiskImage]::CreateDifferencingVhdx($child, $d.Path)
            try { $writer.Complete() } finally { $writer.Dispose() }
            $made += $child
            $frozen += @{ ControllerType = $d.ControllerType; ControllerNumber = $d.ControllerNumber; ControllerLocation = $d.ControllerLocation; Path = $d.Path }
        }
    }
    catch {
        $made | Remove-Item -ErrorAction SilentlyContinue
        $m = if ($_.Exception.InnerException) { $_.Exception.InnerException.Message } else { $_.Exception.Message }
        throw "Checkpoint operation failed. '$($r.Name)' could not initiate a checkpoint operation: $m"
    }
    for ($i = 0; $i -lt $r.HardDrives.Count; $i++) { $r.HardDrives[$i].Path = $made[$i] }
    $folder = Join-Path $r.Path 'Snapshots'
    New-Item -ItemType Directory -Path $folder -Force | Out-Null
    $vmcx = Join-Path $folder "$($id.ToString().ToUpperInvariant()).vmcx"
    @{ Name = $r.Name; Id = $r.Id; Generation = $r.Generation; Version = $r.Version; HardDrives = $frozen } | ConvertTo-Json -Depth 5 | Set-Content $vmcx
    if ($WithMemory) {
        # The saved state: the guest's memory (its counter), padded like real memory pages.
        $state = New-GuestBytes (1000 + [int]$r.MemoryCounter) (2MB)
        $head = [Text.Encoding]::ASCII.GetBytes("STANDIN-VMRS counter=$([int]$r.MemoryCounter);")
        [Array]::Copy($head, $state, $head.Length)
        [IO.File]::WriteAllBytes([IO.Path]::ChangeExtension($vmcx, '.vmrs'), $state)
    }
    $snap = @{ Id = $id.ToString(); Name = $Name; SnapshotType = $Type; CreationTime = (Get-Date).ToString('o'); HardDrives = $frozen; Seq = [long]$r.Seq }
    $r.Snapshots = @($snap)
    Save-Record $r
    $snap
}

# Removes a checkpoint: each child's writes are merged into its parent, the child deleted, the drive back on the parent.
function Remove-StandInSnapshot($r, $snap) {
    for ($i = 0; $i -lt $r.HardDrives.Count; $i++) {
        $d = $r.HardDrives[$i]
        $parent = ($snap.HardDrives | Where-Object { (Get-Slot $_) -eq (Get-Slot $d) }).Path
        foreach ($w in (Get-WritesSince $r (Get-Slot $d) ([long]$snap.Seq))) {
            Invoke-QemuIo $parent ([long]$w.Offset) (New-GuestBytes ([int]$w.Seed) ([int]$w.Length))
        }
        if ($d.Path -ne $parent) { Remove-Item $d.Path -ErrorAction SilentlyContinue }
        $d.Path = $parent
    }
    $vmcx = Join-Path $r.Path "Snapshots/$(([guid]$snap.Id).ToString().ToUpperInvariant()).vmcx"
    Remove-Item $vmcx, ([IO.Path]::ChangeExtension($vmcx, '.vmrs')) -ErrorAction SilentlyContinue
    $r.Snapshots = @($r.Snapshots | Where-Object { $_.Id -ne $snap.Id })
    Save-Record $r
}

# --- the Hyper-V module's commands, as far as VmCheckpoint and its tests use them ---

function New-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [string] $VHDPath, [int] $Generation = 2, [string] $Path, [string] $ComputerName, [string] $Version = '9.0')
    if (Find-Record $Name $ComputerName) { throw "A virtual machine named '$Name' already exists." }
    $id = [guid]::NewGuid().ToString()
    if (-not $Path) { $Path = Join-Path $env:HYPERV_STANDIN_ROOT "vm-files/$id" }
    New-Item -ItemType Directory -Path $Path -Force | Out-Null
    $r = @{ Id = $id; Name = $Name; State = 'Off'; Heartbeat = $null; Version = $Version; Generation = $Generation; CheckpointType = 'Production'
            Path = $Path; HardDrives = @(); Snapshots = @(); ReferencePoints = @(); Writes = @(); Seq = 0; MemoryCounter = 0; BootCount = 0
            ResumedFromSavedState = $false; RefuseCheckpoints = $false; ComputerName = $ComputerName }
    if ($VHDPath) { $r.HardDrives = @(@{ ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = 0; Path = $VHDPath }) }
    Save-Record $r
    ConvertTo-Vm $r
}

function Get-VM {
    [CmdletBinding()]
    param([Parameter(Position = 0)] [string[]] $Name, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    foreach ($r in Read-Record $ComputerName) {
        if (-not $Name -or ($Name | Where-Object { $r.Name -like $_ })) { ConvertTo-Vm $r }
    }
}

function Set-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [ValidateSet('Disabled', 'Production', 'ProductionOnly', 'Standard')] [string] $CheckpointType, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $Name $ComputerName -Required
    if ($CheckpointType) { $r.CheckpointType = $CheckpointType }
    Save-Record $r
}

function Rename-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] $VM, [Parameter(Mandatory)] [string] $NewName)
    $r = Read-Record $VM.ComputerName | Where-Object Id -eq "$($VM.Id)"
    if (-not $r) { throw "Hyper-V was unable to find the virtual machine '$($VM.Name)'." }
    $r.Name = $NewName
    Save-Record $r
}

function Get-VMHardDiskDrive {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $VMName, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $VMName $ComputerName -Required
    foreach ($d in $r.HardDrives) { ConvertTo-Drive $d $r.Name }
}

function Add-VMHardDiskDrive {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $VMName, [Parameter(Mandatory)] [string] $Path, [int] $ControllerLocation = -1, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $VMName $ComputerName -Required
    if ($ControllerLocation -lt 0) { $ControllerLocation = @($r.HardDrives).Count }
    $r.HardDrives = @($r.HardDrives) + @(@{ ControllerType = 'SCSI'; ControllerNumber = 0; ControllerLocation = $ControllerLocation; Path = $Path })
    Save-Record $r
}

# Used on the drives of a Compare-VM report, before Import-VM.
function Set-VMHardDiskDrive {
    [CmdletBinding()]
    param([Parameter(Mandatory)] $VMHardDiskDrive, [Parameter(Mandatory)] [string] $Path)
    $VMHardDiskDrive.Path = $Path
}

function Start-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $Name $ComputerName -Required
    if ($r.State -eq 'Running') { throw "'$Name' failed to change state: the operation cannot be performed while the object is in its current state (Running)." }
    foreach ($d in $r.HardDrives) { if (-not (Test-Path $d.Path)) { throw "'$Name' failed to start: the virtual disk '$($d.Path)' cannot be found." } }
    if ($r.State -eq 'Saved') {
        $r.ResumedFromSavedState = $true     # memory comes back from the saved state: no boot
    } else {
        $r.BootCount = [int]$r.BootCount + 1
        $r.MemoryCounter = 0
        $r.ResumedFromSavedState = $false
    }
    $r.State = 'Running'
    $r.Heartbeat = 'OkApplicationsHealthy'
    Save-Record $r
}

function Stop-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [switch] $TurnOff, [switch] $Force, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $Name $ComputerName -Required
    $r.State = 'Off'; $r.Heartbeat = $null
    Save-Record $r
}

function Remove-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [switch] $Force, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $Name $ComputerName -Required
    if ($r.State -ne 'Off') { throw "'$Name' must be turned off before it is removed." }
    Remove-Item $r.File    # like Hyper-V: the VM's disks and files stay
}

function Checkpoint-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Name, [string] $SnapshotName, [switch] $Passthru, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $Name $ComputerName -Required
    if ($r.CheckpointType -eq 'Disabled') { throw "Checkpoints are disabled for '$Name'." }
    if (-not $SnapshotName) { $SnapshotName = "$Name - $(Get-Date -Format 'MM/dd/yyyy - HH:mm:ss')" }
    # A standard checkpoint saves the memory of a running VM; a production one is of the disks only (VSS in the guest).
    $withMemory = $r.CheckpointType -eq 'Standard' -and $r.State -eq 'Running'
    $s = New-StandInSnapshot $r $SnapshotName 'Standard' $withMemory
    if ($Passthru) { ConvertTo-Snapshot $s $r }
}

function Get-VMSnapshot {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $VMName, [string] $Name, [ValidateSet('Standard', 'Recovery', 'Planned', 'Missing', 'Replica', 'AppConsistentReplica', 'SyncedReplica')] [string] $SnapshotType, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    $r = Find-Record $VMName $ComputerName -Required
    foreach ($s in @($r.Snapshots)) {
        $type = if ($SnapshotType) { $SnapshotType } else { 'Standard' }
        if ($s.SnapshotType -ne $type) { continue }
        if ($Name -and $s.Name -notlike $Name) { continue }
        ConvertTo-Snapshot $s $r
    }
}

function Remove-VMSnapshot {
    [CmdletBinding()]
    param([Parameter(ValueFromPipeline)] $VMSnapshot, [string] $VMName, [string] $Name, [string] $ComputerName, [pscredential] $Credential)
    process {
        Assert-StandInAccess $ComputerName $Credential
        if ($VMSnapshot) { $r = Find-Record $VMSnapshot.VMName $VMSnapshot.ComputerName -Required; $id = "$($VMSnapshot.Id)" }
        else { $r = Find-Record $VMName $ComputerName -Required; $id = (@($r.Snapshots) | Where-Object Name -like $Name | Select-Object -First 1).Id }
        $s = @($r.Snapshots) | Where-Object { $_.Id -eq $id }
        if (-not $s) { throw "Hyper-V was unable to find checkpoint '$id' of '$($r.Name)'." }
        Remove-StandInSnapshot $r $s
    }
}

# Compare-VM: the VM as Import-VM would create it, for its drives to be fixed up first.
function Compare-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $Path, [switch] $Register, [switch] $Copy, [switch] $GenerateNewId,
          [string] $VirtualMachinePath, [string] $SnapshotFilePath, [string] $SmartPagingFilePath, [string] $VhdDestinationPath, [string] $ComputerName, [pscredential] $Credential)
    Assert-StandInAccess $ComputerName $Credential
    if (-not (Test-Path $Path)) { throw "The file '$Path' does not exist or is not a virtual machine configuration." }
    $config = Get-Content -Raw $Path | ConvertFrom-Json
    if (-not $GenerateNewId -and (Read-Record $ComputerName | Where-Object Id -eq $config.Id)) {
        throw "The operation failed because a virtual machine with the identifier $($config.Id) already exists. Import it as a copy with a new identifier."
    }
    $drives = @($config.HardDrives | ForEach-Object { ConvertTo-Drive $_ $config.Name })
    [pscustomobject]@{
        VM = [pscustomobject]@{ Name = $config.Name; Id = [guid]$config.Id; Generation = $config.Generation; Version = $config.Version; HardDrives = $drives }
        Path = $Path; Copy = [bool]$Copy; GenerateNewId = [bool]$GenerateNewId; VirtualMachinePath = $VirtualMachinePath
        VhdDestinationPath = $VhdDestinationPath; ComputerName = $ComputerName
    }
}

function Import-VM {
    [CmdletBinding()]
    param([Parameter(Mandatory)] $CompatibilityReport)
    $report = $CompatibilityReport
    foreach ($d in $report.VM.HardDrives) {
        if (-not (Test-Path $d.Path)) { throw "Import failed: the virtual hard disk '$($d.Path)' cannot be found (incompatibility 40010)." }
    }
    $id = if ($report.GenerateNewId) { [guid]::NewGuid().ToString() } else { $report.VM.Id.ToString() }
    $folder = if ($report.VirtualMachinePath) { $report.VirtualMachinePath } else { [IO.Path]::GetDirectoryName([IO.Path]::GetDirectoryName($report.Path)) }
    $drives = foreach ($d in $report.VM.HardDrives) {
        $path = $d.Path
        if ($report.Copy -and $report.VhdDestinationPath) {
            $target = Join-Path $report.VhdDestinationPath ([IO.Path]::GetFileName($path))
            if ($target -ne $path) { Copy-Item $path $target; $path = $target }
        }
        @{ ControllerType = $d.ControllerType; ControllerNumber = $d.ControllerNumber; ControllerLocation = $d.ControllerLocation; Path = $path }
    }
    # A saved state beside the configuration: the VM comes in Saved, and starting it resumes.
    $vmrs = [IO.Path]::ChangeExtension($report.Path, '.vmrs')
    $r = @{ Id = $id; Name = $report.VM.Name; State = 'Off'; Heartbeat = $null; Version = $report.VM.Version; Generation = $report.VM.Generation
            CheckpointType = 'Production'; Path = $folder; HardDrives = @($drives); Snapshots = @(); ReferencePoints = @(); Writes = @(); Seq = 0
            MemoryCounter = 0; BootCount = 0; ResumedFromSavedState = $false; RefuseCheckpoints = $false; ComputerName = $report.ComputerName }
    if (Test-Path $vmrs) {
        $head = [Text.Encoding]::ASCII.GetString([IO.File]::ReadAllBytes($vmrs), 0, 64)
        if ($head -notmatch '^STANDIN-VMRS counter=(\d+);') { throw "The saved state '$vmrs' is damaged." }
        $r.State = 'Saved'; $r.MemoryCounter = [int]$Matches[1]
    }
    Save-Record $r
    ConvertTo-Vm $r
}

# --- CIM: the root\virtualization\v2 classes and methods behind Resilient Change Tracking ---

function Get-CimInstance {
    [CmdletBinding()]
    param([string] $Namespace, [string] $ClassName, [string] $Filter, [string] $ComputerName, $InputObject, [object] $CimSession)
    if ($InputObject) { return $InputObject }
    if ($CimSession) { $ComputerName = $CimSession.ComputerName; Assert-StandInAccess $ComputerName $CimSession.Credential } else { Assert-StandInAccess $ComputerName $null }
    if ($Namespace -ne 'root/virtualization/v2') { throw "The Hyper-V stand-in has no CIM namespace '$Namespace'." }
    $where = @{}
    foreach ($m in [regex]::Matches("$Filter", "(\w+)='([^']*)'")) { $where[$m.Groups[1].Value] = $m.Groups[2].Value }
    switch ($ClassName) {
        'Msvm_ComputerSystem' {
            foreach ($r in Read-Record $ComputerName | Where-Object { -not $where['Name'] -or $_.Id -eq $where['Name'] }) {
                [pscustomobject]@{ CimClass = $ClassName; Name = $r.Id; ElementName = $r.Name; ComputerName = $ComputerName }
            }
        }
        { $_ -in 'Msvm_VirtualSystemSnapshotService', 'Msvm_VirtualSystemReferencePointService', 'Msvm_ImageManagementService' } {
            [pscustomobject]@{ CimClass = $ClassName; ComputerName = $ComputerName }
        }
        'Msvm_VirtualSystemSettingData' {
            foreach ($r in Read-Record $ComputerName | Where-Object { $_.Id -eq $where.VirtualSystemIdentifier }) {
                foreach ($s in @($r.Snapshots) | Where-Object { (-not $where['ConfigurationID'] -or $_.Id -eq $where['ConfigurationID']) -and (-not $where['InstanceID'] -or "Microsoft:$($_.Id)" -eq $where['InstanceID']) }) {
                    [pscustomobject]@{ CimClass = $ClassName; InstanceID = "Microsoft:$($s.Id)"; ConfigurationID = $s.Id; VirtualSystemIdentifier = $r.Id; ComputerName = $ComputerName }
                }
            }
        }
        'Msvm_VirtualSystemReferencePoint' {
            foreach ($r in Read-Record $ComputerName | Where-Object { $_.Id -eq $where.VirtualSystemIdentifier }) {
                foreach ($p in @($r.ReferencePoints)) {
                    [pscustomobject]@{ CimClass = $ClassName; InstanceID = $p.InstanceID; VirtualSystemIdentifier = $r.Id
                                       ResilientChangeTrackingIdentifiers = [string[]]@($p.Rct); ComputerName = $ComputerName }
                }
            }
        }
        default { throw "The Hyper-V stand-in has no CIM class '$ClassName'." }
    }
}

function Get-CimAssociatedInstance { [CmdletBinding()] param($InputObject, [string] $ResultClassName) throw 'The Hyper-V stand-in completes WMI methods synchronously: there is no job to follow.' }

function Invoke-CimMethod {
    [CmdletBinding()]
    param([Parameter(Mandatory)] $InputObject, [Parameter(Mandatory)] [string] $MethodName, [hashtable] $Arguments = @{})
    $computer = $InputObject.ComputerName
    switch ("$($InputObject.CimClass).$MethodName") {
        'Msvm_VirtualSystemSnapshotService.CreateSnapshot' {
            if ([int]$Arguments.SnapshotType -ne 32768) { return [pscustomobject]@{ ReturnValue = 32773 } }   # the stand-in makes recovery checkpoints only
            $r = Read-Record $computer | Where-Object Id -eq $Arguments.AffectedSystem.Name
            # SnapshotSettings: an embedded Msvm_VirtualSystemSnapshotSettingData as CIM-XML; 1 is application-consistent.
            if ("$($Arguments.SnapshotSettings)" -notmatch 'CLASSNAME="Msvm_VirtualSystemSnapshotSettingData".*NAME="ConsistencyLevel"[^>]*><VALUE>(\d)</VALUE>') { return [pscustomobject]@{ ReturnValue = 32773 } }
            $level = [int]$Matches[1]
            $s = New-StandInSnapshot $r "Recovery checkpoint $(Get-Date -Format o)" 'Recovery' $false
            $r = Read-Record $computer | Where-Object Id -eq $Arguments.AffectedSystem.Name
            $r.Snapshots[0].ConsistencyLevel = $level
            $r.LastConsistencyLevel = $level
            Save-Record $r
            [pscustomobject]@{ ReturnValue = 0; Job = $null
                               ResultingSnapshot = [pscustomobject]@{ CimClass = 'Msvm_VirtualSystemSettingData'; InstanceID = "Microsoft:$($s.Id)"; ConfigurationID = $s.Id; VirtualSystemIdentifier = $r.Id; ComputerName = $computer } }
        }
        'Msvm_VirtualSystemSnapshotService.ConvertToReferencePoint' {
            $snapshot = $Arguments.AffectedSnapshot
            $r = Read-Record $computer | Where-Object Id -eq $snapshot.VirtualSystemIdentifier
            $s = @($r.Snapshots) | Where-Object Id -eq $snapshot.ConfigurationID
            if (-not $s -or $s.SnapshotType -ne 'Recovery') { return [pscustomobject]@{ ReturnValue = 32773 } }
            # The RCT ids record the instant of the checkpoint: writes after it are changes since the reference point.
            $rct = @($r.HardDrives | Sort-Object ControllerType, { [int]$_.ControllerNumber }, { [int]$_.ControllerLocation } | ForEach-Object { "${script:Rct}:$($r.Id):$(Get-Slot $_):$($s.Seq)" })
            Remove-StandInSnapshot $r $s
            $r = Read-Record $computer | Where-Object Id -eq $snapshot.VirtualSystemIdentifier
            $point = @{ InstanceID = "Microsoft:$([guid]::NewGuid())"; Rct = $rct }
            $r.ReferencePoints = @($r.ReferencePoints) + @($point)
            Save-Record $r
            [pscustomobject]@{ ReturnValue = 0; Job = $null
                               ResultingReferencePoint = [pscustomobject]@{ CimClass = 'Msvm_VirtualSystemReferencePoint'; InstanceID = $point.InstanceID; VirtualSystemIdentifier = $r.Id
                                                                            ResilientChangeTrackingIdentifiers = [string[]]$rct; ComputerName = $computer } }
        }
        'Msvm_VirtualSystemReferencePointService.DestroyReferencePoint' {
            $point = $Arguments.AffectedReferencePoint
            $r = Read-Record $computer | Where-Object Id -eq $point.VirtualSystemIdentifier
            $r.ReferencePoints = @($r.ReferencePoints | Where-Object InstanceID -ne $point.InstanceID)
            Save-Record $r
            [pscustomobject]@{ ReturnValue = 0; Job = $null }
        }
        'Msvm_ImageManagementService.GetVirtualDiskChanges' {
            $parts = "$($Arguments.LimitId)".Split(':')
            if ($parts.Count -ne 5 -or $parts[0] -ne $script:Rct) { return [pscustomobject]@{ ReturnValue = 32773 } }
            $r = Read-Record $computer | Where-Object Id -eq $parts[1]
            if (-not $r -or -not (@($r.ReferencePoints) | Where-Object { $_.Rct -contains $Arguments.LimitId })) { return [pscustomobject]@{ ReturnValue = 32775 } }  # no such RCT id
            if ($r['FailChangeTracking']) { return [pscustomobject]@{ ReturnValue = 32768 } }   # "failed", as a broken RCT file gives
            $slot = "$($parts[2]):$($parts[3])"
            $start = [long]$Arguments.ByteOffset
            $processed = [Math]::Min([long]$Arguments.ByteLength, 16MB)
            $end = $start + $processed
            $offsets = [System.Collections.Generic.List[uint64]]::new(); $lengths = [System.Collections.Generic.List[uint64]]::new()
            foreach ($w in (Get-WritesSince $r $slot ([long]$parts[4]) | Sort-Object { [long]$_.Offset })) {
                $from = [Math]::Max([long]$w.Offset, $start); $to = [Math]::Min([long]$w.Offset + [long]$w.Length, $end)
                if ($to -gt $from) { $offsets.Add([uint64]$from); $lengths.Add([uint64]($to - $from)) }
            }
            [pscustomobject]@{ ReturnValue = 0; Job = $null; ChangedByteOffsets = $offsets.ToArray(); ChangedByteLengths = $lengths.ToArray(); ProcessedByteLength = [uint64]$processed }
        }
        default { throw "The Hyper-V stand-in has no method $MethodName on $($InputObject.CimClass)." }
    }
}

# --- the stand-in's guest and faults: what a test does to a VM that Hyper-V's own commands cannot ---

# The guest writes Length bytes (seeded random) at Offset of the drive in Slot: into the .avhdx child while a
# checkpoint exists, else into the .vhdx. Its memory counter goes up with every write.
function Write-StandInGuestData {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $VMName, [Parameter(Mandatory)] [long] $Offset, [int] $Length = 1MB, [int] $Seed = 1, [string] $Slot = 'SCSI0:0', [string] $ComputerName)
    $r = Find-Record $VMName $ComputerName -Required
    if ($r.State -ne 'Running') { throw "The stand-in's guest of '$VMName' is not running." }
    $d = $r.HardDrives | Where-Object { (Get-Slot $_) -eq $Slot }
    if (-not $d) { throw "'$VMName' has no drive $Slot." }
    $r.Seq = [long]$r.Seq + 1
    $r.Writes = @($r.Writes) + @(@{ Seq = $r.Seq; Slot = $Slot; Offset = $Offset; Length = $Length; Seed = $Seed })
    $r.MemoryCounter = [int]$r.MemoryCounter + 1
    $snap = @($r.Snapshots) | Select-Object -First 1
    if ($snap) {
        $parent = ($snap.HardDrives | Where-Object { (Get-Slot $_) -eq $Slot }).Path
        Write-Child $d.Path $parent (Get-WritesSince $r $Slot ([long]$snap.Seq))
    } else {
        Invoke-QemuIo $d.Path $Offset (New-GuestBytes $Seed $Length)
    }
    Save-Record $r
}

# Puts a VM in a state Hyper-V would report after a fault: OffCritical (its storage or worker process failed),
# PausedCritical (a storage error), or a running VM whose heartbeat is LostCommunication; or refuses checkpoints;
# or fails GetVirtualDiskChanges (as a damaged RCT file would).
function Set-StandInVMState {
    [CmdletBinding()]
    param([Parameter(Mandatory)] [string] $VMName, [string] $State, [string] $Heartbeat, [Nullable[bool]] $RefuseCheckpoints, [Nullable[bool]] $FailChangeTracking, [string] $ComputerName)
    $r = Find-Record $VMName $ComputerName -Required
    if ($State) { $r.State = $State }
    if ($PSBoundParameters.ContainsKey('Heartbeat')) { $r.Heartbeat = $Heartbeat }
    if ($null -ne $RefuseCheckpoints) { $r.RefuseCheckpoints = $RefuseCheckpoints }
    if ($null -ne $FailChangeTracking) { $r.FailChangeTracking = $FailChangeTracking }
    Save-Record $r
}

Export-ModuleMember -Function New-VM, Get-VM, Set-VM, Rename-VM, Get-VMHardDiskDrive, Add-VMHardDiskDrive, Set-VMHardDiskDrive, Start-VM, Stop-VM,
    Remove-VM, Checkpoint-VM, Get-VMSnapshot, Remove-VMSnapshot, Compare-VM, Import-VM, Get-CimInstance, New-CimSession, Get-CimAssociatedInstance, Invoke-CimMethod,
    Write-StandInGuestData, Set-StandInVMState
