@{
    Synopsis    = 'Writes a checkpoint''s disks as image files.'
    Description = 'Writes each disk of the checkpoint as <disk name>.<format> in the destination folder: qcow2 (default), raw or VHDX, whatever format the disk had when it was taken. Files are sparse, every block is checked against its hash as it is read, and each file appears under its final name only once complete. Existing files are not overwritten without -Force.'
    Parameters  = @{
        Name        = 'The VM whose checkpoint to restore.'
        Id          = 'The checkpoint id (or a unique prefix); the VM''s latest checkpoint when omitted.'
        Destination = 'The folder to write the disks into; created if needed.'
        DiskFormat  = 'qcow2, raw, vhdx or vhd (a dynamic VHD, for Hyper-V 2008 to 2012 R2 and Virtual PC). qcow2 by default; with -Register, the format the target hypervisor runs its VMs from (vhdx on Hyper-V).'
        DiskName    = 'Restore only these disks (by name, for example vda or disk1).'
        DifferencingParent = 'With -DiskFormat vhdx: a folder holding an earlier restore of this VM (<disk>.vhdx). Each disk is written as <disk>.avhdx, a differencing VHDX on that parent holding only the blocks that differ from it, as a Hyper-V checkpoint chain needs.'
        ConnectionUri = 'The libvirt host to define the VM on, with -Register, -Start or -ResumeMemory (qemu:///system by default): the same host or another one.'
        NewName     = 'Define the VM under this name, with a new UUID and new MAC addresses (implies -Register).'
        Register    = 'Define the VM on the host from the configuration stored with the checkpoint, its disks pointed at the restored files.'
        Start       = 'Define and start the VM.'
        ResumeMemory = 'Define the VM and resume it from the memory state stored with the checkpoint (taken with -IncludeMemory), instead of booting it.'
        Instant     = 'Start the VM at once from the repository instead of after its disks are written (libvirt): each disk is a local qcow2 overlay under -Destination backed by the checkpoint''s export (an export server of the module serving the checkpoint over NBD, every block checked against its hash), the VM is started (or resumed with -ResumeMemory), and libvirt''s block pull copies the data into the overlays in the background, after which the export server stops. Get-VmCheckpointJob shows the copy as a running InstantRestore job with its bytes done, and finishes one a crash or a restart interrupted. Implies -Start; not with -NewName or -DifferencingParent.'
        Force       = 'Overwrite files, and with -Register a VM of the same name, that already exist.'
        Hypervisor = 'The hypervisor to register the VM on (with -Register, -Start, -ResumeMemory or -NewName): by default the one the checkpoint was taken on. A Hyper-V checkpoint is imported on Hyper-V from its stored .vmcx with its drives pointed at the restored VHDX files (Compare-VM, Import-VM); a libvirt one is defined from its domain XML.'
        ComputerName = 'With -Hypervisor HyperV: the Hyper-V host to import the VM on (this computer by default).'
        Credential   = 'With -Hypervisor HyperV and -ComputerName: the account for the remote Hyper-V host (Get-Credential). Its Hyper-V commands get -Credential and its CIM calls (Resilient Change Tracking) one CIM session opened with it.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
        WhatIf      = 'Shows what would be restored without writing anything.'
        Confirm     = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'Run a VM again at once, its data copied home in the background'; Code = 'Restore-VmCheckpoint -Name web01 -Destination /var/lib/libvirt/images/web01 -Instant -ResumeMemory -Force
Get-VmCheckpointJob -Name web01 -Last 1'; Remarks = 'web01 resumes within seconds from the repository; the InstantRestore job shows the bytes copied home, and ends Succeeded once the VM runs from its local files only.' }
        @{ Title = 'Bring a Hyper-V VM back on another host, resumed'; Code = 'Restore-VmCheckpoint -Name sql01 -Destination D:\Restored\sql01 -ComputerName hv03 -ResumeMemory'; Remarks = 'Writes VHDX disks, imports the VM from its checkpoint''s .vmcx with its saved memory state, and starts it: it resumes where the checkpoint was taken.' }
        @{ Title = 'Bring a VM back on another host, running where it was'; Code = 'Restore-VmCheckpoint -Name web01 -Destination /var/lib/libvirt/images/web01 -ConnectionUri qemu+ssh://kvm02/system -ResumeMemory'; Remarks = 'The disks are restored as qcow2, the domain is defined on kvm02 and resumed from its memory state.' }
        @{ Title = 'A copy of a VM under a new name'; Code = 'Restore-VmCheckpoint -Name web01 -Destination /srv/vm/web01-test -NewName web01-test -Start'; Remarks = 'New name, UUID and MAC addresses; the original is untouched.' }
        @{ Title = 'The latest checkpoint, as qcow2'; Code = 'Restore-VmCheckpoint -Name web01 -Destination /var/lib/libvirt/images/restore'; Remarks = 'Writes web01''s disks as qcow2 files.' }
        @{ Title = 'A Hyper-V checkpoint chain'; Code = '$new, $old = Get-VmCheckpoint -Name sql01 | Select-Object -First 2; $old | Restore-VmCheckpoint -Destination D:\VMs\sql01 -DiskFormat vhdx; $new | Restore-VmCheckpoint -Destination D:\VMs\sql01 -DiskFormat vhdx -DifferencingParent D:\VMs\sql01'; Remarks = 'sql01.vhdx holds the older checkpoint; sql01.avhdx, its differencing child, only the blocks of the newest that differ from it.' }
        @{ Title = 'A given checkpoint, as raw, over an earlier restore'; Code = 'Get-VmCheckpoint -Name web01 | Select-Object -Skip 2 -First 1 | Restore-VmCheckpoint -Destination ./r -DiskFormat raw -Force'; Remarks = 'The third newest checkpoint.' }
    )
}
