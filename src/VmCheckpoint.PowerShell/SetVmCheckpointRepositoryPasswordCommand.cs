using System;
using System.Management.Automation;
using System.Security;
using VmCheckpoint.Core.Security;

namespace VmCheckpoint.PowerShell
{
    /// <summary>What Set-VmCheckpointRepositoryPassword did.</summary>
    public sealed class RepositoryPasswordResult
    {
        public string Repository { get; set; } = "";
        /// <summary>Added (the old password still works too) or Changed (the old one no longer opens the repository).</summary>
        public string Action { get; set; } = "";
        /// <summary>Passwords that now open the repository.</summary>
        public int Passwords { get; set; }
    }

    /// <summary>
    /// Changes or adds a password of an encrypted repository: a new key slot wraps the same master key, so no data is
    /// re-encrypted; when changing, the slot the current password opened is deleted after the new one is written.
    /// </summary>
    [Cmdlet(VerbsCommon.Set, "VmCheckpointRepositoryPassword", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
    [OutputType(typeof(RepositoryPasswordResult))]
    public sealed class SetVmCheckpointRepositoryPasswordCommand : VmCheckpointCmdlet
    {
        /// <summary>The new password.</summary>
        [Parameter]
        [ValidateNotNull]
        public SecureString? NewPassword { get; set; }

        /// <summary>A file whose first line is the new password.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? NewPasswordFile { get; set; }

        /// <summary>Keeps the current password working beside the new one.</summary>
        [Parameter]
        public SwitchParameter Add { get; set; }

        protected override void ProcessRecord()
        {
            if ((NewPassword is null) == (NewPasswordFile is null))
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("Give the new password with -NewPassword or -NewPasswordFile (one of them)."), "NewPasswordNotGiven", ErrorCategory.InvalidArgument, null));
            if (!Add && Password is null && PasswordFile is null)
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("Give the current password with -Password or -PasswordFile: the key it opens is the one replaced (or use -Add to keep it)."), "CurrentPasswordNotGiven", ErrorCategory.InvalidArgument, null));
            RepositorySecret secret = null!;
            try
            {
                secret = NewPassword != null ? RepositorySecret.FromSecureString(NewPassword, "-NewPassword") : RepositorySecret.FromFile(ResolvePath(NewPasswordFile!), "-NewPasswordFile " + NewPasswordFile);
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "NewPassword", NewPasswordFile));
            }
            var repository = OpenRepository();
            try
            {
                repository.RequireEncrypted();
            }
            catch (InvalidOperationException e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "SetPassword", repository.Path));
            }
            if (!ShouldProcess(repository.Path, Add ? "Add a password" : "Change the password (the current one stops working)")) return;
            try
            {
                repository.AddPassword(secret, replace: !Add);
                WriteObject(new RepositoryPasswordResult { Repository = repository.Path, Action = Add ? "Added" : "Changed", Passwords = repository.KeyCount });
            }
            catch (Exception e) when (!(e is PipelineStoppedException))
            {
                ThrowTerminatingError(ToErrorRecord(e, "SetPassword", repository.Path));
            }
        }
    }
}
