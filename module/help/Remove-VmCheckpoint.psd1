@{
    Synopsis    = 'Removes checkpoints and reclaims the blocks no other checkpoint uses.'
    Description = 'Removes the checkpoints piped in or given by -Id, or those a retention policy does not keep (-KeepLast, -KeepDaily, -KeepWeekly, -KeepMonthly, per VM; a checkpoint any rule keeps is kept). Every checkpoint is complete on its own, so removing any of them never breaks another.

Blocks are then reclaimed under the repository''s exclusive lock: if another process is taking a checkpoint into the same repository, reclaiming waits for up to -LockTimeout seconds and is otherwise left for a later run. Nothing a running checkpoint needs is ever deleted.'
    Parameters  = @{
        Id          = 'Checkpoint ids (or unique prefixes); bound from piped checkpoint objects.'
        Name        = 'With a policy: the VMs it applies to; wildcards allowed. All by default.'
        KeepLast    = 'Keep the newest N checkpoints of each VM.'
        KeepDaily   = 'Keep the newest checkpoint of each of the last N days that have one.'
        KeepWeekly  = 'Keep the newest checkpoint of each of the last N ISO weeks that have one.'
        KeepMonthly = 'Keep the newest checkpoint of each of the last N months that have one.'
        NoReclaim   = 'Only remove the checkpoints; reclaim space in a later run.'
        LockTimeout = 'Seconds to wait for checkpoints running in other processes before leaving the reclaim for later (default 60).'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
        WhatIf      = 'Shows which checkpoints would be removed.'
        Confirm     = 'Asks before each removal (the default for this cmdlet; use -Confirm:$false in scripts).'
    }
    Examples    = @(
        @{ Title = 'A retention policy'; Code = 'Remove-VmCheckpoint -KeepLast 3 -KeepDaily 7 -KeepWeekly 4 -KeepMonthly 12 -Confirm:$false'; Remarks = 'For every VM of the repository.' }
        @{ Title = 'See what a policy would remove'; Code = 'Remove-VmCheckpoint -Name web* -KeepLast 2 -WhatIf'; Remarks = 'Nothing is removed.' }
        @{ Title = 'Remove checkpoints older than 90 days'; Code = 'Get-VmCheckpoint | Where-Object Time -lt (Get-Date).AddDays(-90) | Remove-VmCheckpoint -Confirm:$false'; Remarks = 'By pipeline.' }
    )
}
