@{
    Synopsis    = 'Rebuilds lost or damaged index files from the packs.'
    Description = 'Reads every index file and the trailer of every pack (each pack lists its own blocks), then replaces index files that are damaged, lost, disagree with the packs or name packs that are gone by one index written from what the packs say, as restic''s "repair index" does. The new index is written before the old files are removed, so an interruption at any point leaves a readable repository.

A pack whose header or trailer is damaged is reported, never deleted: its blocks that an intact index file lists and that read back right stay indexed. No pack is ever deleted by this command, and no block any checkpoint uses is lost by it. Blocks that checkpoints use and that no readable pack holds are reported: the index cannot bring them back.

The repair runs under the repository''s exclusive lock (it waits up to -LockTimeout seconds for running checkpoints) and is logged in the catalog''s job log. One result object: IndexFilesRead, DamagedIndexFiles, MismatchedIndexFiles, PacksRead, PacksIndexed, PacksGone, DamagedPacks, IndexesRebuilt, IndexFilesRemoved, BlobsIndexed, MissingBlocks, DamagedCheckpoints and Actions (what was done, in sentences); nothing when -WhatIf or a declined -Confirm stops it.'
    Parameters  = @{
        LockTimeout = 'Seconds to wait for checkpoints running in other processes before giving up (default 60).'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk, where the run is logged. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder.'
        WhatIf      = 'Shows what the repair would do (the index files it would replace, the packs it would index); writes nothing.'
        Confirm     = 'Asks before the index is rewritten.'
    }
    Examples    = @(
        @{ Title = 'Repair after Test-VmCheckpoint reported a damaged index'; Code = 'Repair-VmCheckpointRepository -Repository /mnt/backup/repo; Test-VmCheckpoint -Repository /mnt/backup/repo -ReadData'; Remarks = 'The index is rebuilt from the packs; the full check then reads every byte again.' }
        @{ Title = 'See what a repair would do'; Code = 'Repair-VmCheckpointRepository -Repository /mnt/backup/repo -WhatIf'; Remarks = 'Reads the index files and the packs'' trailers; writes nothing.' }
    )
}
