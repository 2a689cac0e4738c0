@{
    Synopsis    = 'Unmounts a checkpoint mounted by Mount-VmCheckpoint and stops what served it.'
    Description = 'Unmounts the file systems Mount-VmCheckpoint mounted under -Path, detaches their loop devices, ends nbdfuse, stops the export server and removes the folders the mount made. A file system still in use is left mounted with an error naming it; close what uses it and run Dismount-VmCheckpoint again to finish. Works from any session of the host: the mount is found by its folder.'
    Parameters  = @{
        Path        = 'The folder given to Mount-VmCheckpoint; bound from its output objects.'
        Repository  = 'Not used: the mount is found by its folder.'
        CatalogPath = 'Not used: the mount is found by its folder.'
        WhatIf      = 'Shows what would be dismounted, and dismounts nothing.'
        Confirm     = 'Asks before dismounting.'
    }
    Examples    = @(
        @{ Title = 'Undo a mount'; Code = 'Dismount-VmCheckpoint -Path /mnt/web01-old'; Remarks = 'Nothing of the mount is left: no mount, loop device or process.' }
        @{ Title = 'By pipeline'; Code = 'Mount-VmCheckpoint -Name web01 -Path /mnt/w | Dismount-VmCheckpoint'; Remarks = 'The objects Mount-VmCheckpoint writes carry the folder.' }
    )
}
