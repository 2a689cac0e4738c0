@{
    Synopsis    = 'Creates an empty VmCheckpoint repository in a folder, on a share, or in S3 object storage.'
    Description = 'Creates the repository layout (configuration, packs, index, checkpoints, locks) in an empty or new folder. The folder may be local, an NFS mount or an SMB share; the repository is a modest number of large files that are never rewritten in place, so it suits slow network file systems.

In S3 (Amazon S3, Ceph''s radosgw, MinIO...), give s3://bucket/prefix: the bucket is created if it does not exist, and the prefix must hold no object. The endpoint and keys come from the AWS conventions: AWS_ENDPOINT_URL for a gateway other than Amazon''s (addressed path-style), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile of ~/.aws/credentials (AWS_PROFILE), AWS_REGION. Every host and process using the repository needs the same.

The block size is fixed for the life of the repository: blocks are deduplicated across every disk and VM that share it.'
    Parameters  = @{
        Path      = 'The folder to create the repository in (it must not exist or be empty), or s3://bucket/prefix (the prefix must hold no object; a missing bucket is created).'
        RetainDays = 'S3 only: days every pack and manifest is kept from deletion by S3 Object Lock, in compliance mode (nobody, the bucket''s owner included, deletes them before). The bucket must have Object Lock: a bucket that does not exist yet is created with it; one without it is refused. Remove-VmCheckpoint leaves retained checkpoints in place with a warning, and reclaiming never tries to delete a retained pack.'
        BlockSize = 'Bytes per block, a power of two from 64 KiB to 16 MiB. The default, 1 MiB, is explained in docs/repository-format.md.'
        WhatIf    = 'Shows what would be created without creating it.'
        Confirm   = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'A repository on an SMB share'; Code = 'New-VmCheckpointRepository -Path \\nas\backup\vms'; Remarks = 'Creates the repository; point every other cmdlet at it with -Repository or $env:VMCHECKPOINT_REPOSITORY.' }
        @{ Title = 'A repository in S3 (here Ceph''s radosgw)'; Code = '$env:AWS_ENDPOINT_URL = ''http://rgw.example:7480''; $env:AWS_ACCESS_KEY_ID = ''...''; $env:AWS_SECRET_ACCESS_KEY = ''...''; New-VmCheckpointRepository -Path s3://backups/kvm'; Remarks = 'Creates the bucket if needed and the repository under the prefix kvm; -Repository s3://backups/kvm then works with every cmdlet.' }
        @{ Title = 'A local repository used by default'; Code = 'New-VmCheckpointRepository /srv/vmcheckpoint; $env:VMCHECKPOINT_REPOSITORY = ''/srv/vmcheckpoint'''; Remarks = 'Later cmdlets need no -Repository.' }
    )
}
