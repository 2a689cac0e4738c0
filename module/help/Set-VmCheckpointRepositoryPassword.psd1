@{
    Synopsis    = 'Changes or adds a password of an encrypted repository, without re-encrypting its data.'
    Description = 'An encrypted repository (New-VmCheckpointRepository -Encrypt) keeps one random master key, wrapped once per password in a key file under keys/. This command writes a new key file for the new password; nothing else in the repository changes, so it takes a second whatever the repository holds.

Without -Add, the password changes: the key file the current password (-Password or -PasswordFile, required) opened is deleted once the new one is written, so the current password stops working; other passwords added before keep working. With -Add, the current password keeps working beside the new one (for example one password for the admins and one in a file for unattended runs).

A wrong current password is a SecurityError and nothing is written. A new password that already opens the repository is refused (ResourceExists). Someone who copied the master key while they had a password keeps it: changing the password does not re-key the data. One result object: Repository, Action (Changed or Added) and Passwords (how many passwords now open the repository).'
    Parameters  = @{
        Repository      = 'The encrypted repository: a local folder, a mounted share, a UNC path, or s3://bucket/prefix. Defaults to $env:VMCHECKPOINT_REPOSITORY.'
        Password        = 'The current password, as a SecureString. Required to change it (the key it opens is the one replaced); with -Add, it defaults to $env:VMCHECKPOINT_PASSWORD or $env:VMCHECKPOINT_PASSWORD_FILE.'
        PasswordFile    = 'A file whose first line is the current password.'
        NewPassword     = 'The new password, as a SecureString (Read-Host -AsSecureString).'
        NewPasswordFile = 'A file whose first line is the new password.'
        Add             = 'Adds the new password and keeps the current one working.'
        CatalogPath     = 'The LiteDB catalog file (accepted like every other command''s; this one writes nothing to it).'
        WhatIf          = 'Shows what would change; writes nothing.'
        Confirm         = 'Asks before the password is changed or added.'
    }
    Examples    = @(
        @{ Title = 'Change the password at the prompt'; Code = 'Set-VmCheckpointRepositoryPassword -Repository /mnt/backup/repo -Password (Read-Host -AsSecureString ''Current'') -NewPassword (Read-Host -AsSecureString ''New'')'; Remarks = 'The old password no longer opens the repository; checkpoints are not rewritten.' }
        @{ Title = 'Add a password file for scheduled runs'; Code = 'Set-VmCheckpointRepositoryPassword -Repository s3://backups/kvm -Add -NewPasswordFile /root/.vmcheckpoint-password'; Remarks = 'Unlocks with $env:VMCHECKPOINT_PASSWORD and adds a second password read from the file; set $env:VMCHECKPOINT_PASSWORD_FILE for the schedules.' }
    )
}
