@{
    Synopsis    = 'Checks that checkpoints can be restored.'
    Description = 'Checks each checkpoint''s manifest against its checksum and every block it lists against the index and the pack files, and every index file against its checksum. With -ReadData the packs are read, each once from start to end: when every checkpoint is checked, every byte of every pack (header, each block decompressed and re-hashed, the pack''s checksum, its trailer) and every index file against the packs'' own trailers; for some checkpoints only, the blocks they use with their packs'' headers and trailers. One result object per checkpoint, naming the damaged disks and blocks, and a warning for each damaged checkpoint.

Damage outside the checkpoints is a non-terminating error per object, whether or not a checkpoint uses it: Verify.DamagedIndex (Repair-VmCheckpointRepository rewrites the index from the packs), Verify.DamagedPack, Verify.DamagedConfiguration. Packs that no index file lists are a warning. A damaged configuration file is refused when the repository is opened. The run holds a shared lock, so no reclaiming deletes a pack meanwhile, and is logged in the job log as Failed when anything is damaged.

With -Boot, each healthy checkpoint is then booted as an isolated copy, as Veeam''s SureBackup does (libvirt only): its disks are served read-only from the repository and the copy runs on local qcow2 overlays over them, as a transient domain named <vm>-boottest-<id> with no network interfaces, no host devices or shared folders, its serial console written to a file of its own and its NVRAM a copy. It passes when its guest agent answers, or, with -ConsolePattern, when its serial console shows the pattern, within -BootTimeout; it fails when the time is up or the copy stops first, with the reason. Then the copy is stopped (libvirt forgets it), its overlays, with everything it wrote, are deleted, and the export server stops: the original VM runs on untouched. The outcome is the result''s Boot (Passed or Failed, null when not booted) and BootReason properties, a warning when it failed, a BootTest job in the job log, and the checkpoint''s BootResult, BootReason and BootTime in the catalog (Get-VmCheckpoint shows them; Watch-VmHealth restores the newest checkpoint that passed first). A checkpoint whose VM has no guest agent channel needs -ConsolePattern (error BootTest.InvalidArgument otherwise).'
    Parameters  = @{
        Name        = 'VM names; wildcards allowed. All by default.'
        Id          = 'Checkpoint ids or prefixes.'
        ReadData    = 'Read the packs: re-hash every block, and check every byte of every pack when every checkpoint is checked.'
        Boot           = 'Boot each healthy checkpoint as an isolated copy (new name, no network, changes thrown away) and wait for its guest agent, or for -ConsolePattern on its serial console. Adds Boot and BootReason to the results and records them in the catalog.'
        ConsolePattern = 'With -Boot: a regular expression (multi-line: ^ and $ match at each line) that the copy''s serial console must show; the guest agent is then not asked. Needed for VMs without a guest agent channel.'
        BootTimeout    = 'With -Boot: how long each copy may take to come up, as a time span (00:02:00, or New-TimeSpan -Minutes 2). 5 minutes by default.'
        ConnectionUri  = 'With -Boot: the libvirt host that boots the copies. qemu:///system by default.'
        Repository  = 'The repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION or a shared credentials profile). Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        CatalogPath = 'The LiteDB catalog file, kept on local disk. Defaults to $env:VMCHECKPOINT_CATALOG, else catalog.db under the local application data folder. Rebuilt from the repository whenever it is missing.'
    }
    Examples    = @(
        @{ Title = 'Quick check of every checkpoint'; Code = 'Test-VmCheckpoint -Repository /mnt/backup/repo'; Remarks = 'Finds missing packs and damaged manifests and index files.' }
        @{ Title = 'Every byte of the repository, with its damage as errors'; Code = 'Test-VmCheckpoint -ReadData -ErrorVariable damage; $damage.FullyQualifiedErrorId'; Remarks = 'Verify.DamagedIndex, Verify.DamagedPack or Verify.DamagedConfiguration, one per damaged object.' }
        @{ Title = 'Boot the latest checkpoint of a VM'; Code = 'Get-VmCheckpoint -Name web01 -Latest | Test-VmCheckpoint -Boot -BootTimeout 00:03:00 | Select-Object Id, Status, Boot, BootReason'; Remarks = 'Passes when the copy''s guest agent answers within 3 minutes.' }
        @{ Title = 'A VM without a guest agent'; Code = 'Test-VmCheckpoint -Name appliance -Id 1f2e -Boot -ConsolePattern ''login:'''; Remarks = 'Passes when its serial console shows a login prompt.' }
        @{ Title = 'Full check of the latest checkpoints, failing a scheduled script'; Code = 'if (Get-VmCheckpoint -Latest | Test-VmCheckpoint -ReadData | Where-Object Status -ne Healthy) { exit 1 }'; Remarks = 'Exit code for Task Scheduler or a systemd timer.' }
    )
}
