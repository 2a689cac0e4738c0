using System.Management.Automation;
using VmCheckpoint.Core.Security;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Creates an empty repository in a folder, on a share, or in S3 (s3://bucket/prefix).</summary>
    [Cmdlet(VerbsCommon.New, "VmCheckpointRepository", SupportsShouldProcess = true)]
    [OutputType(typeof(RepositoryConfig))]
    public sealed class NewVmCheckpointRepositoryCommand : PSCmdlet
    {
        [Parameter(Mandatory = true, Position = 0)]
        [ValidateNotNullOrEmpty]
        public string Path { get; set; } = "";

        /// <summary>Bytes per block, a power of two from 64 KiB to 16 MiB; 1 MiB by default (docs/repository-format.md).</summary>
        [Parameter]
        [ValidateRange(RepositoryConfig.MinBlockSize, RepositoryConfig.MaxBlockSize)]
        public int BlockSize { get; set; } = RepositoryConfig.DefaultBlockSize;

        /// <summary>S3 only: days every pack and manifest is kept from deletion by S3 Object Lock (compliance mode).</summary>
        [Parameter]
        [ValidateRange(1, RepositoryConfig.MaxRetainDays)]
        public int RetainDays { get; set; }

        /// <summary>Encrypts everything the repository stores (AES-256-GCM) under a random key wrapped by the password.</summary>
        [Parameter]
        public SwitchParameter Encrypt { get; set; }

        /// <summary>With -Encrypt: the password; defaults to $env:VMCHECKPOINT_PASSWORD.</summary>
        [Parameter]
        [ValidateNotNull]
        public System.Security.SecureString? Password { get; set; }

        /// <summary>With -Encrypt: a file whose first line is the password; defaults to $env:VMCHECKPOINT_PASSWORD_FILE.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? PasswordFile { get; set; }

        protected override void ProcessRecord()
        {
            var path = VmCheckpointCmdlet.ResolveRepository(SessionState, Path);
            if (!Encrypt && (Password != null || PasswordFile != null))
                ThrowTerminatingError(new ErrorRecord(new System.ArgumentException("-Password and -PasswordFile encrypt a repository only with -Encrypt."), "PasswordWithoutEncrypt", ErrorCategory.InvalidArgument, path));
            RepositorySecret? secret = null;
            if (Encrypt)
            {
                try
                {
                    secret = RepositorySecret.Choose(Password, PasswordFile is null ? null : GetUnresolvedProviderPathFromPSPath(PasswordFile), useEnvironment: true);
                }
                catch (System.Exception e)
                {
                    ThrowTerminatingError(VmCheckpointCmdlet.ToErrorRecord(e, "Password", PasswordFile));
                }
                if (secret is null)
                    ThrowTerminatingError(new ErrorRecord(new RepositoryPasswordException($"-Encrypt needs a password: give -Password or -PasswordFile, or set $env:{RepositorySecret.PasswordVariable} or $env:{RepositorySecret.PasswordFileVariable}. Without it the repository cannot be read: keep it somewhere safe."),
                        "RepositoryPassword", ErrorCategory.SecurityError, path));
            }
            if (!ShouldProcess(path, Encrypt ? "Create encrypted VmCheckpoint repository" : "Create VmCheckpoint repository")) return;
            try
            {
                var repository = CheckpointRepository.Create(path, BlockSize, RetainDays, secret);
                var result = new PSObject(repository.Config);
                result.Properties.Add(new PSNoteProperty("Path", repository.Path));
                WriteObject(result);
            }
            catch (System.Exception e)
            {
                var category = e is System.ArgumentException ? ErrorCategory.InvalidArgument
                    : e is System.UnauthorizedAccessException ? ErrorCategory.PermissionDenied
                    : e is Core.Repository.Backends.LocationNotEmptyException ? ErrorCategory.ResourceExists
                    : e is System.InvalidOperationException ? ErrorCategory.InvalidOperation
                    : e is System.IO.IOException ? ErrorCategory.ResourceUnavailable
                    : ErrorCategory.ResourceExists;
                ThrowTerminatingError(new ErrorRecord(e, "NewRepository." + e.GetType().Name.Replace("Exception", ""), category, path));
            }
        }
    }
}
