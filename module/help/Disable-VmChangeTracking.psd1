@{
    Synopsis    = 'Removes what VmCheckpoint left in a VM and its disk files to track changes: libvirt checkpoints, qcow2 bitmaps, Hyper-V reference points.'
    Description = 'Between checkpoints, VmCheckpoint keeps a record of what changed in each VM: a libvirt checkpoint (vmckpt-<time>) with a dirty bitmap in each qcow2 disk, a persistent bitmap (vmcheckpoint-...) in image files checkpointed with Invoke-VmCheckpoint -DiskPath, or a Hyper-V reference point (Resilient Change Tracking). This cmdlet lists and removes them: before removing VmCheckpoint from a host, before virsh undefine (which otherwise says "cannot delete inactive domain with N checkpoints"), or to start tracking afresh. Checkpoints in the repository are not touched, and each still restores; the VM''s next checkpoint reads every data block once (storing only what changed) and tracking starts again. A shut-off libvirt VM''s qcow2 files are also cleared of bitmaps whose libvirt checkpoint was lost in a crash; a running VM''s bitmaps without a libvirt checkpoint stay until it stops. Image files that any process holds open are refused (ResourceBusy), naming the process or VM. Use -WhatIf to see what would go.'
    Parameters  = @{
        Name          = 'The VMs (wildcards allowed).'
        DiskPath      = 'qcow2 image files checkpointed with Invoke-VmCheckpoint -DiskPath (wildcards expand): their vmcheckpoint-* bitmaps are removed (with qemu-img).'
        ConnectionUri = 'The libvirt host (qemu:///system by default).'
        Hypervisor    = 'The VMs'' hypervisor: Libvirt (the default) or HyperV.'
        ComputerName  = 'With -Hypervisor HyperV: the Hyper-V hosts, one or several (this computer by default). A host that cannot be reached is a non-terminating error and the others are still done.'
        Credential   = 'With -Hypervisor HyperV and -ComputerName: the account for the remote Hyper-V host (Get-Credential). Its Hyper-V commands get -Credential and its CIM calls (Resilient Change Tracking) one CIM session opened with it.'
        Repository    = 'Not used: nothing in the repository changes.'
        CatalogPath   = 'Not used: nothing in the catalog changes.'
    }
    Examples    = @(
        @{ Title = 'See what would be removed from a VM'; Code = 'Disable-VmChangeTracking -Name web01 -WhatIf -Verbose'; Remarks = 'Lists each libvirt checkpoint and bitmap; removes nothing.' }
        @{ Title = 'Undefine a VM checkpointed live'; Code = 'Disable-VmChangeTracking -Name web01 -Confirm:$false; virsh undefine web01'; Remarks = 'libvirt refuses to undefine a domain that still has checkpoints.' }
        @{ Title = 'Clear image files'; Code = 'Disable-VmChangeTracking -DiskPath /var/lib/libvirt/images/old.qcow2 -Confirm:$false'; Remarks = 'The file keeps its data; only VmCheckpoint''s bitmaps go.' }
    )
}
