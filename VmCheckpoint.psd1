@{
    RootModule           = 'VmCheckpoint.psm1'   # loads netstandard2.0/ or net10.0-linux-x64/VmCheckpoint.PowerShell.dll
    ModuleVersion        = '0.1.0'
    GUID                 = '5d7e2f0c-3b1a-4c8e-9f61-2a4b8c0d9e17'
    Author               = 'VmCheckpoint developers'
    CompanyName          = 'VmCheckpoint'
    Copyright            = '(c) VmCheckpoint developers. MIT License.'
    Description          = 'Checkpoints of libvirt/KVM and Hyper-V virtual machines (qcow2, VHDX, raw disks) into a deduplicated, differential repository on a share, with a LiteDB catalog, verified restores and retention.'
    PowerShellVersion    = '5.1'
    CompatiblePSEditions = @('Desktop', 'Core')
    FormatsToProcess     = @('VmCheckpoint.Format.ps1xml')
    CmdletsToExport      = @(
        'New-VmCheckpointRepository'
        'Invoke-VmCheckpoint'
        'Get-CheckpointedVm'
        'Get-VmCheckpoint'
        'Restore-VmCheckpoint'
        'Mount-VmCheckpoint'
        'Dismount-VmCheckpoint'
        'Test-VmCheckpoint'
        'Repair-VmCheckpointRepository'
        'Set-VmCheckpointRepositoryPassword'
        'Remove-VmCheckpoint'
        'Get-VmCheckpointJob'
        'Watch-VmHealth'
        'Get-VmHealthEvent'
        'Register-VmCheckpointSchedule'
        'Get-VmCheckpointSchedule'
        'Unregister-VmCheckpointSchedule'
        'Invoke-VmCheckpointSchedule'
        'Set-VmCheckpointNotification'
        'Get-VmCheckpointNotification'
        'Remove-VmCheckpointNotification'
        'Disable-VmChangeTracking'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('Backup', 'Checkpoint', 'Restore', 'libvirt', 'KVM', 'QEMU', 'HyperV', 'Hyper-V', 'qcow2', 'VHDX', 'VHD', 'Deduplication', 'Linux', 'Windows', 'PSEdition_Core', 'PSEdition_Desktop')
            ReleaseNotes = 'Memory checkpoints through a live external snapshot (milliseconds of pause) stored page by page; disks a running VM holds are refused; VHD disks; restarts in place before any rollback; one checkpoint session per source and a storage seam under the repository. See docs/decisions.md.'
            # ProjectUri and LicenseUri go here once the project has a public home: PSResourceGet refuses an empty one
            # ("ProjectUrl cannot be empty"), and a made-up address would send users nowhere.
        }
    }
}
