@{
    Synopsis    = 'Lists the VMs that have checkpoints in a repository.'
    Description = 'One object per VM: name, hypervisor, host, number of checkpoints, time of the latest and bytes its checkpoints added to the repository. Read from the local catalog, which is brought up to date with the repository first (a new host sees every checkpoint of a shared repository).'
    Parameters  = @{
        Name        = 'VM names to list; wildcards allowed. All by default.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'All VMs'; Code = 'Get-CheckpointedVm -Repository /mnt/backup/repo'; Remarks = 'A table of every VM with checkpoints.' }
        @{ Title = 'VMs whose latest checkpoint is older than a day'; Code = 'Get-CheckpointedVm | Where-Object LatestTime -lt (Get-Date).AddDays(-1)'; Remarks = 'For monitoring scripts.' }
    )
}
