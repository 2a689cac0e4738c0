@{
    Synopsis    = 'Reads the catalog''s job log.'
    Description = 'Every checkpoint, restore, verification and removal run is logged in the catalog with its start, end, result and error. Newest first.'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed.'
        Result      = 'Only jobs with this result: Running, Succeeded, Failed or Cancelled.'
        Last        = 'At most this many jobs.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'Failed jobs'; Code = 'Get-VmCheckpointJob -Result Failed -Last 10'; Remarks = 'What went wrong, and when.' }
    )
}
