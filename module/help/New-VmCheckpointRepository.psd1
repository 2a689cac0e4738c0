@{
    Synopsis    = 'Creates an empty VmCheckpoint repository in a folder or on a share.'
    Description = 'Creates the repository layout (configuration, packs, index, checkpoints, locks) in an empty or new folder. The folder may be local, an NFS mount or an SMB share; the repository is a modest number of large files that are never rewritten in place, so it suits slow network file systems.

The block size is fixed for the life of the repository: blocks are deduplicated across every disk and VM that share it.'
    Parameters  = @{
        Path      = 'The folder to create the repository in. It must not exist or be empty.'
        BlockSize = 'Bytes per block, a power of two from 64 KiB to 16 MiB. The default, 1 MiB, is explained in docs/repository-format.md.'
        WhatIf    = 'Shows what would be created without creating it.'
        Confirm   = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'A repository on an SMB share'; Code = 'New-VmCheckpointRepository -Path \\nas\backup\vms'; Remarks = 'Creates the repository; point every other cmdlet at it with -Repository or $env:VMCHECKPOINT_REPOSITORY.' }
        @{ Title = 'A local repository used by default'; Code = 'New-VmCheckpointRepository /srv/vmcheckpoint; $env:VMCHECKPOINT_REPOSITORY = ''/srv/vmcheckpoint'''; Remarks = 'Later cmdlets need no -Repository.' }
    )
}
