using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// Starts the kernel writing a file's dirty pages while the file is still being written (Linux
    /// sync_file_range with SYNC_FILE_RANGE_WRITE, every <see cref="Chunk"/> bytes), so that the fsync that makes
    /// the file durable at the end has little left to do. It only starts writeback: durability still comes from
    /// that final fsync, which the writers keep. Elsewhere, or where the call fails, it does nothing.
    /// </summary>
    internal sealed class WriteBehind
    {
        internal const long Chunk = 16L << 20;
        private const uint SyncFileRangeWrite = 2;
        private static bool s_unavailable = !RuntimeInformation.IsOSPlatform(OSPlatform.Linux);

        private readonly FileStream _file;
        private long _from;
        private long _end;
        private bool _off;

        public WriteBehind(FileStream file)
        {
            _file = file;
        }

        /// <summary>Ranges handed to the kernel so far (tests).</summary>
        internal int Started { get; private set; }

        /// <summary>Bytes up to <paramref name="end"/> have been written (unbuffered); starts writeback of full chunks.</summary>
        public void Written(long end)
        {
            if (end > _end) _end = end;
            if (_off || s_unavailable || _end - _from < Chunk) return;
            try
            {
                int fd = (int)_file.SafeFileHandle.DangerousGetHandle();
                if (SyncFileRange(fd, _from, _end - _from, SyncFileRangeWrite) != 0)
                {
                    _off = true; // e.g. a file system that does not support it: the final fsync does all
                    return;
                }
                Started++;
                _from = _end;
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                s_unavailable = true;
            }
        }

        [DllImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
        private static extern int SyncFileRange(int fd, long offset, long nbytes, uint flags);
    }
}
