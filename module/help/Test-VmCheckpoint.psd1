@{
    Synopsis    = 'Checks that checkpoints can be restored.'
    Description = 'Checks each checkpoint''s manifest against its checksum and every block it lists against the index and the pack files, and every index file against its checksum. With -ReadData the packs are read, each once from start to end: when every checkpoint is checked, every byte of every pack (header, each block decompressed and re-hashed, the pack''s checksum, its trailer) and every index file against the packs'' own trailers; for some checkpoints only, the blocks they use with their packs'' headers and trailers. One result object per checkpoint, naming the damaged disks and blocks, and a warning for each damaged checkpoint.

Damage outside the checkpoints is a non-terminating error per object, whether or not a checkpoint uses it: Verify.DamagedIndex (Repair-VmCheckpointRepository rewrites the index from the packs), Verify.DamagedPack, Verify.DamagedConfiguration. Packs that no index file lists are a warning. A damaged configuration file is refused when the repository is opened. The run holds a shared lock, so no reclaiming deletes a pack meanwhile, and is logged in the job log as Failed when anything is damaged.'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed. All by default.'
        Id          = 'Checkpoint ids or prefixes.'
        ReadData    = 'Read the packs: re-hash every block, and check every byte of every pack when every checkpoint is checked.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'Quick check of every checkpoint'; Code = 'Test-VmCheckpoint -Repository /mnt/backup/repo'; Remarks = 'Finds missing packs and damaged manifests and index files.' }
        @{ Title = 'Every byte of the repository, with its damage as errors'; Code = 'Test-VmCheckpoint -ReadData -ErrorVariable damage; $damage.FullyQualifiedErrorId'; Remarks = 'Verify.DamagedIndex, Verify.DamagedPack or Verify.DamagedConfiguration, one per damaged object.' }
        @{ Title = 'Full check of the latest checkpoints, failing a scheduled script'; Code = 'if (Get-VmCheckpoint -Latest | Test-VmCheckpoint -ReadData | Where-Object Status -ne Healthy) { exit 1 }'; Remarks = 'Exit code for Task Scheduler or a systemd timer.' }
    )
}
