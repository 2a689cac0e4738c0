using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    internal static partial class SparseFile
    {
        /// <summary>lseek(2) SEEK_DATA / SEEK_HOLE (Linux values; macOS numbers them differently).</summary>
        private static class Unix
        {
            private const int SeekData = 3;
            private const int SeekHole = 4;
            private const int ENXIO = 6;

            [DllImport("libc", EntryPoint = "lseek", SetLastError = true)]
            private static extern long LSeek(int fd, long offset, int whence);

            public static IEnumerable<DiskExtent> GetAllocatedRanges(FileStream file, long offset, long length)
            {
                // The descriptor's own position is moved here; FileStream always seeks before reading, so that is harmless.
                int fd = (int)file.SafeFileHandle.DangerousGetHandle();
                long end = offset + length;
                long pos = offset;
                while (pos < end)
                {
                    long data = LSeek(fd, pos, SeekData);
                    if (data < 0)
                    {
                        int errno = Marshal.GetLastWin32Error();
                        if (errno == ENXIO) yield break; // no data at or after pos
                        // The file system cannot tell (EINVAL and the like): everything left counts as data.
                        yield return new DiskExtent(pos, end - pos);
                        yield break;
                    }

                    if (data >= end) yield break;
                    long hole = LSeek(fd, data, SeekHole);
                    if (hole < 0 || hole > end) hole = end;
                    if (hole <= data) hole = end; // should not happen; never loop in place
                    yield return new DiskExtent(data, hole - data);
                    pos = hole;
                }
            }
        }
    }
}
