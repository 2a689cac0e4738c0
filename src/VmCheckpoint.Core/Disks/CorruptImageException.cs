using System.IO;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>A disk image that is corrupt, hostile or of an unsupported variant.</summary>
    public sealed class CorruptImageException : InvalidDataException
    {
        public CorruptImageException(string path, string message)
            : base($"{path}: {message}")
        {
            ImagePath = path;
        }

        public string ImagePath { get; }
    }
}
