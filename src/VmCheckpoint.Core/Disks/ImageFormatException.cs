namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// A file that is not in the format its name or the caller says (a .qcow2 that holds no qcow2 header), or that is in
    /// a format this module does not read (VMDK, VDI, parallels, ...). Nothing is read from it as raw instead: a file of
    /// another format read as raw would store the container's bytes as if they were the disk's.
    /// </summary>
    public sealed class ImageFormatException : CorruptImageException
    {
        public ImageFormatException(string path, string? expectedFormat, string foundFormat, string message)
            : base(path, message)
        {
            ExpectedFormat = expectedFormat;
            FoundFormat = foundFormat;
        }

        /// <summary>The format the file's name or the caller asked for ("qcow2", "VMDK", ...), or null when none was.</summary>
        public string? ExpectedFormat { get; }

        /// <summary>What the file's content is: a format's name ("VMDK", "qcow2", ...), or "raw data" when no format was recognised.</summary>
        public string FoundFormat { get; }
    }
}
