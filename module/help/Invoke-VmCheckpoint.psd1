@{
    Synopsis    = 'Takes a checkpoint of a VM''s disks into the repository.'
    Description = 'Reads the disks (qcow2, VHDX or raw image files given by -DiskPath, for example the disks of a shut-off VM), cuts them into blocks aligned to disk offsets, hashes each block and stores, compressed, only the blocks the repository does not hold yet. Unallocated and all-zero blocks are never read or stored, so a sparse disk costs the time of its data, not of its virtual size.

The checkpoint is differential against the VM''s latest checkpoint (only changed blocks are stored) and yet complete: it restores on its own, without any chain. An interrupted run leaves every earlier checkpoint intact; the next run reuses the blocks it stored. The run is written to the catalog''s job log.'
    Parameters  = @{
        DiskPath    = 'Image files to checkpoint together as the disks of one VM. Each disk is named after its file''s base name (disk1.qcow2 is disk1). Accepts FileInfo objects from the pipeline.'
        Name        = 'The VM''s name in the repository. Checkpoints of the same name form its history.'
        Repository  = 'The repository: a local folder, a mounted share or a UNC path. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
        WhatIf      = 'Shows what would be checkpointed without reading or writing anything.'
        Confirm     = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Checkpoint the disks of a shut-off VM'; Code = 'Invoke-VmCheckpoint -Name web01 -DiskPath /var/lib/libvirt/images/web01.qcow2, /var/lib/libvirt/images/web01-data.qcow2 -Repository /mnt/backup/repo'; Remarks = 'Outputs the new checkpoint: how much was read, changed and stored.' }
        @{ Title = 'Every image of a folder, from the pipeline'; Code = 'Get-ChildItem D:\VMs\sql01\*.vhdx | Invoke-VmCheckpoint -Name sql01 -Verbose'; Remarks = 'Progress shows per disk; -Verbose says which parent checkpoint the run was compared against.' }
    )
}
