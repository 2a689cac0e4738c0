@{
    Synopsis    = 'Creates an empty VmCheckpoint repository in a folder, on a share, or in S3 object storage.'
    Description = 'Creates the repository layout (configuration, packs, index, checkpoints, locks) in an empty or new folder. The folder may be local, an NFS mount or an SMB share; the repository is a modest number of large files that are never rewritten in place, so it suits slow network file systems.

In S3 (Amazon S3, Ceph''s radosgw, MinIO...), give s3://bucket/prefix: the bucket is created if it does not exist, and the prefix must hold no object. The endpoint and keys come from the AWS conventions: AWS_ENDPOINT_URL for a gateway other than Amazon''s (addressed path-style), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or a profile of ~/.aws/credentials (AWS_PROFILE), AWS_REGION. Every host and process using the repository needs the same.

The block size is fixed for the life of the repository: blocks are deduplicated across every disk and VM that share it.

With -Encrypt, everything the repository stores but its configuration and locks is encrypted with AES-256-GCM under a random master key, and block ids are keyed hashes (HMAC-SHA256), so that whoever holds the storage can neither read it nor probe it for known content; no VM or disk name appears in clear. The master key is kept in keys/, wrapped by a key derived from the password with Argon2id: without a password that opens one of those keys, the checkpoints cannot be read by anyone. Keep the password somewhere safe. Set-VmCheckpointRepositoryPassword adds or changes passwords later without re-encrypting anything.'
    Parameters  = @{
        Path      = 'The folder to create the repository in (it must not exist or be empty), or s3://bucket/prefix (the prefix must hold no object; a missing bucket is created).'
        RetainDays = 'S3 only: days every pack and manifest is kept from deletion by S3 Object Lock, in compliance mode (nobody, the bucket''s owner included, deletes them before). The bucket must have Object Lock: a bucket that does not exist yet is created with it; one without it is refused. Remove-VmCheckpoint leaves retained checkpoints in place with a warning, and reclaiming never tries to delete a retained pack.'
        Encrypt   = 'Encrypts the repository (AES-256-GCM, keyed block ids) under a random master key wrapped by the password given with -Password, -PasswordFile, $env:VMCHECKPOINT_PASSWORD or $env:VMCHECKPOINT_PASSWORD_FILE. The repository is written in format 2, which versions without encryption refuse to open.'
        Password  = 'With -Encrypt: the password, as a SecureString (Read-Host -AsSecureString). Defaults to $env:VMCHECKPOINT_PASSWORD.'
        PasswordFile = 'With -Encrypt: a file whose first line is the password. Defaults to $env:VMCHECKPOINT_PASSWORD_FILE.'
        BlockSize = 'Bytes per block, a power of two from 64 KiB to 16 MiB. The default, 1 MiB, is explained in docs/repository-format.md.'
        WhatIf    = 'Shows what would be created without creating it.'
        Confirm   = 'Asks for confirmation first.'
    }
    Examples    = @(
        @{ Title = 'A repository on an SMB share'; Code = 'New-VmCheckpointRepository -Path \\nas\backup\vms'; Remarks = 'Creates the repository; point every other cmdlet at it with -Repository or $env:VMCHECKPOINT_REPOSITORY.' }
        @{ Title = 'A repository in S3 (here Ceph''s radosgw)'; Code = '$env:AWS_ENDPOINT_URL = ''http://rgw.example:7480''; $env:AWS_ACCESS_KEY_ID = ''...''; $env:AWS_SECRET_ACCESS_KEY = ''...''; New-VmCheckpointRepository -Path s3://backups/kvm'; Remarks = 'Creates the bucket if needed and the repository under the prefix kvm; -Repository s3://backups/kvm then works with every cmdlet.' }
        @{ Title = 'An encrypted repository for unattended runs'; Code = 'Set-Content -Path /root/.vmcheckpoint-password -Value ''correct horse battery staple''; chmod 600 /root/.vmcheckpoint-password; New-VmCheckpointRepository -Path s3://backups/kvm -Encrypt -PasswordFile /root/.vmcheckpoint-password; $env:VMCHECKPOINT_PASSWORD_FILE = ''/root/.vmcheckpoint-password'''; Remarks = 'Creates an encrypted repository; later cmdlets and schedules read the password from the file the variable names.' }
        @{ Title = 'A local repository used by default'; Code = 'New-VmCheckpointRepository /srv/vmcheckpoint; $env:VMCHECKPOINT_REPOSITORY = ''/srv/vmcheckpoint'''; Remarks = 'Later cmdlets need no -Repository.' }
    )
}
