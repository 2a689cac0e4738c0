@{
    Synopsis    = 'Checks that checkpoints can be restored.'
    Description = 'Checks each checkpoint''s manifest against its checksum and every block it lists against the index and the pack files. With -ReadData every block is read, decompressed and re-hashed (each distinct block once). One result object per checkpoint, naming the damaged disks and blocks; a warning for each damaged checkpoint.'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed. All by default.'
        Id          = 'Checkpoint ids or prefixes.'
        ReadData    = 'Read and re-hash every block, not only check that it is there.'
        Repository  = 'The repository: a local folder, a mounted share or a UNC path. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'Quick check of every checkpoint'; Code = 'Test-VmCheckpoint -Repository /mnt/backup/repo'; Remarks = 'Finds missing packs and damaged manifests.' }
        @{ Title = 'Full check of the latest checkpoints, failing a scheduled script'; Code = 'if (Get-VmCheckpoint -Latest | Test-VmCheckpoint -ReadData | Where-Object Status -ne Healthy) { exit 1 }'; Remarks = 'Exit code for Task Scheduler or a systemd timer.' }
    )
}
