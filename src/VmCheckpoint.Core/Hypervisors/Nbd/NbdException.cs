using System.IO;

namespace VmCheckpoint.Core.Hypervisors.Nbd
{
    /// <summary>
    /// An error from libnbd or the NBD server behind it, with libnbd's message and errno (0 when libnbd gave none).
    /// </summary>
    /// <remarks>An IOException: the export is a disk read over a socket, and callers handle both alike.</remarks>
    public sealed class NbdException : IOException
    {
        public NbdException(string message, int errno) : base(message)
        {
            Errno = errno;
        }

        /// <summary>The errno libnbd reported, e.g. 2 ENOENT for a missing socket, 5 EIO for a failed read.</summary>
        public int Errno { get; }
    }
}
