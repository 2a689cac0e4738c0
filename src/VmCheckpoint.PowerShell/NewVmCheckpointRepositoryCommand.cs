using System.Management.Automation;
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

        protected override void ProcessRecord()
        {
            var path = VmCheckpointCmdlet.ResolveRepository(SessionState, Path);
            if (!ShouldProcess(path, "Create VmCheckpoint repository")) return;
            try
            {
                var repository = CheckpointRepository.Create(path, BlockSize, RetainDays);
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
