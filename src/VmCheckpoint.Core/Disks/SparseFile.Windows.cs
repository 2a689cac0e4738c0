using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.IO;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VmCheckpoint.Core.Disks
{
    internal static partial class SparseFile
    {
        /// <summary>FSCTL_QUERY_ALLOCATED_RANGES and FSCTL_SET_SPARSE on NTFS and ReFS.</summary>
        private static class Windows
        {
            private const uint FsctlSetSparse = 0x000900C4;
            private const uint FsctlQueryAllocatedRanges = 0x000940CF;
            private const int ErrorMoreData = 234;
            private const int RangesPerCall = 64;
            private const int RangeSize = 16; // FILE_ALLOCATED_RANGE_BUFFER: two LARGE_INTEGERs

            [DllImport("kernel32.dll", SetLastError = true)]
            private static extern bool DeviceIoControl(SafeFileHandle device, uint code, byte[]? inBuffer, int inSize,
                byte[]? outBuffer, int outSize, out int returned, IntPtr overlapped);

            public static IEnumerable<DiskExtent> GetAllocatedRanges(FileStream file, long offset, long length)
            {
                long end = offset + length;
                long pos = offset;
                var query = new byte[RangeSize];
                var output = new byte[RangeSize * RangesPerCall];
                while (pos < end)
                {
                    BitConverter.GetBytes(pos).CopyTo(query, 0);
                    BitConverter.GetBytes(end - pos).CopyTo(query, 8);
                    bool ok = DeviceIoControl(file.SafeFileHandle, FsctlQueryAllocatedRanges, query, query.Length,
                        output, output.Length, out int returned, IntPtr.Zero);
                    int error = ok ? 0 : Marshal.GetLastWin32Error();
                    if (!ok && error != ErrorMoreData)
                    {
                        // Not a sparse-aware file system: everything counts as data.
                        yield return new DiskExtent(pos, end - pos);
                        yield break;
                    }

                    int count = returned / RangeSize;
                    if (count == 0) yield break;
                    for (int i = 0; i < count; i++)
                    {
                        long start = BitConverter.ToInt64(output, i * RangeSize);
                        long size = BitConverter.ToInt64(output, i * RangeSize + 8);
                        long s = Math.Max(start, pos);
                        long e = Math.Min(start + size, end);
                        if (e > s) yield return new DiskExtent(s, e - s);
                        pos = Math.Max(pos, start + size);
                    }

                    if (ok) yield break; // everything fitted in one answer
                }
            }

            public static void MarkSparse(FileStream file)
            {
                if (!DeviceIoControl(file.SafeFileHandle, FsctlSetSparse, null, 0, null, 0, out _, IntPtr.Zero))
                {
                    throw new Win32Exception(Marshal.GetLastWin32Error(), $"{file.Name}: cannot mark the file sparse");
                }
            }
        }
    }
}
