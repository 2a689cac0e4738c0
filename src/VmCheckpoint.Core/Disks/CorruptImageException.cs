using System.IO;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>A disk image that is corrupt, hostile or of an unsupported variant.</summary>
    /// <remarks>
    /// Derives from IOException because InvalidDataException is sealed on every target framework.
    /// </remarks>
    public sealed class CorruptImageException : IOException
    {
        public CorruptImageException(string path, string message)
            : base($"{path}: {message}")
        {
            ImagePath = path;
        }

        public string ImagePath { get; }
    }
}
