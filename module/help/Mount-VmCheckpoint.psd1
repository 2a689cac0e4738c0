@{
    Synopsis    = 'Mounts every file system of a checkpoint''s disks read-only under a folder, straight from the repository.'
    Description = 'File-level restore without restoring a disk: the checkpoint''s disks are served over NBD by an export server of the module (a process of its own that reads blocks from the repository and checks each against its hash as it serves it), nbdfuse shows each disk as a file, a read-only loop device covers each partition (MBR, including logical partitions, and GPT) and each file system is mounted read-only under -Path: <Path>/<disk>-part<N>, or <Path>/<disk> for a disk with no partition table. ext2/3/4 are mounted with noload and XFS with norecovery, so no journal is replayed; NTFS and others are mounted when the host can. A block that does not match its hash makes the read fail (an I/O error), never return other bytes.

Copying a file out of a checkpoint is then a Copy-Item. Dismount-VmCheckpoint -Path undoes all of it, the export server included. Needs root (mount, losetup), nbdfuse, sfdisk and blkid (build.ps1 Bootstrap installs them on Debian).'
    Parameters  = @{
        Name        = 'The VM whose checkpoint is mounted; bound from piped checkpoint objects.'
        Id          = 'The checkpoint id (or a unique prefix); the VM''s latest checkpoint when omitted.'
        DiskName    = 'Mount only the file systems of these disks (by the names the checkpoint gives them, e.g. vda).'
        Path        = 'An empty or new folder: each file system is mounted in a folder of its own under it.'
        Repository  = 'The repository: a local folder, a mounted share or a UNC path. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
        WhatIf      = 'Shows what would be mounted, and mounts nothing.'
        Confirm     = 'Asks before mounting.'
    }
    Examples    = @(
        @{ Title = 'Copy one file out of last week''s checkpoint'; Code = '$cp = Get-VmCheckpoint -Name web01 | Where-Object Time -lt (Get-Date).AddDays(-7) | Select-Object -First 1
$cp | Mount-VmCheckpoint -Path /mnt/web01-old
Copy-Item /mnt/web01-old/vda-part1/etc/nginx/nginx.conf ./nginx.conf
Dismount-VmCheckpoint -Path /mnt/web01-old'; Remarks = 'Nothing is restored: only the blocks read are fetched from the repository.' }
        @{ Title = 'One disk only'; Code = 'Mount-VmCheckpoint -Name db01 -DiskName vdb -Path /mnt/db01'; Remarks = 'The file systems of disk vdb of db01''s latest checkpoint.' }
    )
}
