@{
    Synopsis    = 'Lists checkpoints, newest first.'
    Description = 'One object per checkpoint: id, VM, hypervisor, time, disks, virtual size, bytes changed and stored, duration. The objects pipe into Restore-VmCheckpoint, Test-VmCheckpoint and Remove-VmCheckpoint.'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed. All by default.'
        Id          = 'Checkpoint ids, or unique prefixes of at least four characters.'
        Latest      = 'Only the newest checkpoint of each VM.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'Checkpoints of one VM'; Code = 'Get-VmCheckpoint -Name web01'; Remarks = 'Newest first.' }
        @{ Title = 'Restore the latest checkpoint of every VM'; Code = 'Get-VmCheckpoint -Latest | Restore-VmCheckpoint -Destination /srv/restore -DiskFormat raw'; Remarks = 'Each VM''s disks go to /srv/restore.' }
    )
}
