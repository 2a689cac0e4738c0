using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// Which ranges of a file the file system has allocated, so holes of sparse raw images are never read,
    /// and marking new files sparse. Each platform lives in its own file; elsewhere the whole file is data.
    /// </summary>
    internal static partial class SparseFile
    {
        /// <summary>Allocated ranges within [offset, offset + length), sorted, possibly not merged.</summary>
        public static IEnumerable<DiskExtent> GetAllocatedRanges(FileStream file, long offset, long length)
        {
            if (length <= 0) return new DiskExtent[0];
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                return Unix.GetAllocatedRanges(file, offset, length);
            }

            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                return Windows.GetAllocatedRanges(file, offset, length);
            }

            return new[] { new DiskExtent(offset, length) };
        }

        /// <summary>Makes a new, empty file sparse where the file system needs to be told (NTFS).</summary>
        public static void MarkSparse(FileStream file)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                Windows.MarkSparse(file);
            }

            // Linux and macOS file systems leave unwritten ranges as holes without being asked.
        }
    }
}
