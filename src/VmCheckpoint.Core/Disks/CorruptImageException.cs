using System.IO;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>A disk image that is corrupt, hostile or of an unsupported variant.</summary>
    /// <remarks>
    /// Derives from IOException because InvalidDataException is sealed on every target framework. Not sealed:
    /// <see cref="ImageFormatException"/> is one kind of it, and callers that map this type to an error category
    /// (InvalidData) map every kind alike.
    /// </remarks>
    public class CorruptImageException : IOException
    {
        public CorruptImageException(string path, string message)
            : base($"{path}: {message}")
        {
            ImagePath = path;
        }

        public string ImagePath { get; }
    }
}
