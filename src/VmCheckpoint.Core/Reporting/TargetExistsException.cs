using System.IO;

namespace VmCheckpoint.Core.Reporting
{
    /// <summary>A restore would overwrite an existing file (or domain) and was not forced.</summary>
    public sealed class TargetExistsException : IOException
    {
        public TargetExistsException(string target)
            : base($"{target} already exists; use -Force to overwrite it.")
        {
            Target = target;
        }

        public TargetExistsException(string target, string message)
            : base(message)
        {
            Target = target;
        }

        public string Target { get; }
    }
}
