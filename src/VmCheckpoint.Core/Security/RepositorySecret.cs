using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Security;
using System.Text;

namespace VmCheckpoint.Core.Security
{
    /// <summary>
    /// An encrypted repository refused: no password given, or one that opens none of its keys. Nothing was written.
    /// </summary>
    public sealed class RepositoryPasswordException : SecurityException
    {
        public RepositoryPasswordException(string message) : base(message) { }
    }

    /// <summary>
    /// A repository password and where it came from (for messages; the password itself never appears in one).
    /// From <c>-Password</c> (a SecureString), <c>-PasswordFile</c> (its first line; a trailing newline is not part of
    /// it), or, for unattended runs, <c>$env:VMCHECKPOINT_PASSWORD</c> or <c>$env:VMCHECKPOINT_PASSWORD_FILE</c>.
    /// </summary>
    public sealed class RepositorySecret
    {
        public const string PasswordVariable = "VMCHECKPOINT_PASSWORD";
        public const string PasswordFileVariable = "VMCHECKPOINT_PASSWORD_FILE";

        private RepositorySecret(byte[] password, string source)
        {
            if (password.Length == 0) throw new ArgumentException($"The password from {source} is empty.");
            Password = password;
            Source = source;
        }

        internal byte[] Password { get; }

        /// <summary>Where the password came from: "-Password", "-PasswordFile /root/pw", "$env:VMCHECKPOINT_PASSWORD".</summary>
        public string Source { get; }

        public static RepositorySecret FromString(string password, string source) => new RepositorySecret(Encoding.UTF8.GetBytes(password), source);

        public static RepositorySecret FromSecureString(SecureString password, string source = "-Password")
        {
            IntPtr text = IntPtr.Zero;
            try
            {
                text = Marshal.SecureStringToGlobalAllocUnicode(password);
                return FromString(Marshal.PtrToStringUni(text, password.Length), source);
            }
            finally
            {
                if (text != IntPtr.Zero) Marshal.ZeroFreeGlobalAllocUnicode(text);
            }
        }

        /// <summary>The first line of a file (as restic's --password-file): what an admin writes with echo or an editor.</summary>
        public static RepositorySecret FromFile(string path, string? source = null)
        {
            source ??= "-PasswordFile " + path;
            string text;
            try
            {
                text = File.ReadAllText(path);
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                throw new RepositoryPasswordException($"The password file {path} ({source}) cannot be read: {e.Message}");
            }
            int end = text.IndexOfAny(new[] { '\r', '\n' });
            return FromString(end >= 0 ? text.Substring(0, end) : text, source);
        }

        /// <summary>
        /// The password a command was given: <paramref name="password"/> (-Password) or the file <paramref name="passwordFile"/>
        /// names (-PasswordFile), never both (<see cref="ArgumentException"/>); with neither, the environment's when
        /// <paramref name="useEnvironment"/>, else null.
        /// </summary>
        public static RepositorySecret? Choose(SecureString? password, string? passwordFile, bool useEnvironment)
        {
            if (password != null && passwordFile != null) throw new ArgumentException("Give -Password or -PasswordFile, not both.");
            if (password != null) return FromSecureString(password);
            if (passwordFile != null) return FromFile(passwordFile);
            return useEnvironment ? FromEnvironment() : null;
        }

        /// <summary>$env:VMCHECKPOINT_PASSWORD, else the file $env:VMCHECKPOINT_PASSWORD_FILE names, else null.</summary>
        public static RepositorySecret? FromEnvironment()
        {
            var password = Environment.GetEnvironmentVariable(PasswordVariable);
            if (!string.IsNullOrEmpty(password)) return FromString(password!, "$env:" + PasswordVariable);
            var file = Environment.GetEnvironmentVariable(PasswordFileVariable);
            if (!string.IsNullOrEmpty(file)) return FromFile(file!, "$env:" + PasswordFileVariable + " (" + file + ")");
            return null;
        }
    }
}
