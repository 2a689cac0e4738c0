@{
    Synopsis    = 'Takes a checkpoint of VMs (running or not) on a libvirt or Hyper-V host, or of disk image files, into the repository.'
    Description = 'With -Name alone, checkpoints VMs of a libvirt host without stopping them: a pull-mode backup exports each disk at one instant over NBD with a new libvirt checkpoint, and only the blocks written since the VM''s last checkpoint (its dirty bitmap) are read. When the bitmap is gone or broken (after a crash of qemu), the run reads the allocated blocks and stores only those whose hash changed: never a new full upload, never a failed run; the reason goes into the job log. A shut-off VM is read from its disk files. -IncludeMemory takes the memory and device state at the same instant (the VM is paused briefly; the pause is reported). The domain XML is stored with the checkpoint.

With -DiskPath, reads image files (qcow2, VHDX or raw, for example the disks of a shut-off VM) as the disks of one VM. Either way the engine cuts them into blocks aligned to disk offsets, hashes each block and stores, compressed, only the blocks the repository does not hold yet. Unallocated and all-zero blocks are never read or stored, so a sparse disk costs the time of its data, not of its virtual size.

The checkpoint is differential against the VM''s latest checkpoint (only changed blocks are stored) and yet complete: it restores on its own, without any chain. An interrupted run leaves every earlier checkpoint intact; the next run reuses the blocks it stored. The run is written to the catalog''s job log.'
    Parameters  = @{
        DiskPath    = 'Image files to checkpoint together as the disks of one VM. Each disk is named after its file''s base name (disk1.qcow2 is disk1). Accepts FileInfo objects from the pipeline.'
        Name        = 'Live: the libvirt domains to checkpoint (wildcards allowed; objects with a Name property from the pipeline). With -DiskPath: the one name the disks are stored under. Checkpoints of the same name form a VM''s history.'
        ConnectionUri = 'The libvirt URI of the host (qemu:///system by default; qemu+ssh://host/system for a remote one).'
        IncludeMemory = 'Also take the memory and device state, consistent with the disks, so that Restore-VmCheckpoint -ResumeMemory resumes the VM where it was.'
        Full        = 'Read every allocated block instead of only the changed ones. Blocks already in the repository are still not stored again.'
        Hypervisor = 'The hypervisor of the VMs: Libvirt (the default) or HyperV. Hyper-V VMs are checkpointed through the Hyper-V module and, for configuration version 6.2 and later, Resilient Change Tracking: a recovery checkpoint freezes the disks, only the ranges changed since the last stored checkpoint''s reference point are read, and the checkpoint becomes the next reference point. With -IncludeMemory (or without RCT), a standard (or production) checkpoint is taken, every present block read, and the checkpoint merged afterwards.'
        ComputerName = 'With -Hypervisor HyperV: the Hyper-V host whose VMs to checkpoint (this computer by default).'
        Repository  = 'The repository: a local folder, a mounted share or a UNC path. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
        WhatIf      = 'Shows what would be checkpointed without reading or writing anything.'
        Confirm     = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Checkpoint a Hyper-V VM'; Code = 'Invoke-VmCheckpoint -Hypervisor HyperV -Name sql01 -ComputerName hv02 -Repository \\\\nas\\backup\\vms'; Remarks = 'Only the ranges Resilient Change Tracking reports since the last checkpoint are read; the checkpoint''s .vmcx is stored with it. (Tested on Linux against a stand-in of the Hyper-V module; see docs/hyperv.md.)' }
        @{ Title = 'Checkpoint running VMs, with their memory'; Code = 'Invoke-VmCheckpoint -Name web*, db01 -IncludeMemory -Repository \\\\nas\\backup\\vms'; Remarks = 'Only blocks changed since each VM''s last checkpoint are read; the pause taken for the memory state is in PauseSeconds.' }
        @{ Title = 'Checkpoint the disks of a shut-off VM'; Code = 'Invoke-VmCheckpoint -Name web01 -DiskPath /var/lib/libvirt/images/web01.qcow2, /var/lib/libvirt/images/web01-data.qcow2 -Repository /mnt/backup/repo'; Remarks = 'Outputs the new checkpoint: how much was read, changed and stored.' }
        @{ Title = 'Every image of a folder, from the pipeline'; Code = 'Get-ChildItem D:\VMs\sql01\*.vhdx | Invoke-VmCheckpoint -Name sql01 -Verbose'; Remarks = 'Progress shows per disk; -Verbose says which parent checkpoint the run was compared against.' }
    )
}
