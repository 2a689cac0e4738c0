@{
    Synopsis    = 'Reads the health log: what Watch-VmHealth detected and did.'
    Description = 'Every detection, action (with its result and recovery time) and give-up of the watcher, newest first.'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed.'
        Kind        = 'Only events of this kind: Detected, Action, Waiting or GaveUp.'
        Last        = 'At most this many events.'
        Repository  = 'The repository holding the VMs'' checkpoints: a folder, a share, or s3://bucket/prefix. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file (its health log records every detection and action). Defaults to $env:VMCHECKPOINT_CATALOG, else under the local application data folder.'
    }
    Examples    = @(
        @{ Title = 'Recoveries of the last day'; Code = 'Get-VmHealthEvent -Kind Action | Where-Object Time -gt (Get-Date).AddDays(-1)'; Remarks = 'RecoverySeconds says how long each VM was down.' }
    )
}
