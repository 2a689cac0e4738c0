using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// Reads and writes the bulk of image files with O_DIRECT on Linux: data moves between the device and an aligned
    /// staging buffer without passing through the page cache. A checkpoint reads gigabytes once and a restore writes
    /// gigabytes once; through the page cache each 4 KiB costs a page allocation and a copy (on a virtual machine also
    /// a fault into the host on first touch), evicts what the host's running VMs had cached, and a restore leaves it
    /// all to write back at its final fsync. Measured here: 3 GiB of real data written and fsync'd in 3.6-6.5 s through
    /// the page cache and in 1.4-1.6 s with O_DIRECT; a live restore went from 11.0 s to 4.2 s (docs/decisions.md).
    /// </summary>
    /// <remarks>
    /// A second descriptor beside the image's FileStream, which keeps the small, unaligned and metadata reads and
    /// writes, the file's length and its fsync; only runs of whole aligned blocks come here, so the two never share a
    /// page being written. Only files on local disk file systems (ext2/3/4, XFS, btrfs) are opened so; on network
    /// and FUSE file systems, tmpfs and the rest the TryOpen methods return null, as where O_DIRECT is refused, and a
    /// first transfer refused with EINVAL turns it off: the caller then uses its FileStream as before.
    /// VMCHECKPOINT_DIRECT_IO=off turns it off everywhere.
    /// </remarks>
    internal sealed class DirectFile : IDisposable
    {
        /// <summary>Offsets and lengths written here are multiples of this (every Linux block device's logical block divides it).</summary>
        internal const int Alignment = 4096;

        /// <summary>Reads smaller than this go through the page cache: a device round trip each would cost more than the copy.</summary>
        internal const int MinimumRead = 64 * 1024;

        internal const string EnvironmentVariable = "VMCHECKPOINT_DIRECT_IO";
        // One repository block and a little: a block read at any alignment, or a qcow2 writer's run of 16 clusters, is
        // one transfer. Allocated at the first transfer: a VM's disks and their backing files each hold a DirectFile.
        private const int StagingBytes = (1 << 20) + (64 << 10);
        private const int ORdonly = 0, OWronly = 1;
        private const int OCloexec = 0x80000; // x86-64, arm64
        private const int ODirect = 0x4000;   // x86-64 (arm64 uses 0x10000)
        private const int EINTR = 4;
        private const int EINVAL = 22;

        private readonly string _path;
        private readonly int _fd;
        private IntPtr _allocation;
        private IntPtr _staging;
        private bool _refused;
        private bool _disposed;

        private DirectFile(string path, int fd)
        {
            _path = path;
            _fd = fd;
        }

        private IntPtr Staging
        {
            get
            {
                if (_staging == IntPtr.Zero)
                {
                    _allocation = Marshal.AllocHGlobal(StagingBytes + Alignment);
                    _staging = new IntPtr((_allocation.ToInt64() + Alignment - 1) & ~(long)(Alignment - 1));
                }
                return _staging;
            }
        }

        /// <summary>Bytes moved through O_DIRECT so far (tests).</summary>
        internal long DirectBytes { get; private set; }

        /// <summary>Opens an existing file for direct writes, or returns null where that is not possible.</summary>
        public static DirectFile? TryOpenForWriting(string path) => TryOpen(path, OWronly);

        /// <summary>Opens a file for direct reads, or returns null where that is not possible.</summary>
        public static DirectFile? TryOpenForReading(string path) => TryOpen(path, ORdonly);

        private static DirectFile? TryOpen(string path, int access)
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || RuntimeInformation.ProcessArchitecture != Architecture.X64) return null;
            if (string.Equals(Environment.GetEnvironmentVariable(EnvironmentVariable), "off", StringComparison.OrdinalIgnoreCase)) return null;
            int fd;
            try
            {
                if (!OnLocalDisk(path)) return null;
                fd = Open(path, access | OCloexec | ODirect);
            }
            catch (Exception e) when (e is DllNotFoundException || e is EntryPointNotFoundException)
            {
                return null;
            }
            return fd < 0 ? null : new DirectFile(path, fd); // EINVAL on tmpfs and the like: the page cache it is
        }

        /// <summary>
        /// Writes <paramref name="count"/> bytes at <paramref name="offset"/> directly, if both are aligned and direct writes
        /// work here; returns false, having written nothing, when the caller must write them itself.
        /// </summary>
        public unsafe bool TryWrite(long offset, byte[] buffer, int index, int count)
        {
            CheckNotDisposed();
            if (_refused || offset % Alignment != 0 || count % Alignment != 0) return false;
            StreamIO.CheckBuffer(buffer, index, count);
            IntPtr staging = Staging;
            for (int done = 0; done < count;)
            {
                int n = Math.Min(StagingBytes, count - done);
                Marshal.Copy(buffer, index + done, staging, n);
                for (int put = 0; put < n;)
                {
                    long r = PWrite(_fd, (byte*)staging + put, (UIntPtr)(uint)(n - put), offset + done + put);
                    if (r > 0) { put += (int)r; continue; }
                    int errno = Marshal.GetLastWin32Error();
                    if (r < 0 && errno == EINTR) continue;
                    if (Refuses(r, errno)) return false;
                    throw Failure("write", offset + done + put, r, errno);
                }
                done += n;
                DirectBytes += n;
            }
            return true;
        }

        /// <summary>
        /// Reads up to <paramref name="count"/> bytes at <paramref name="offset"/> (any alignment: the aligned blocks around
        /// them are read) and returns how many there were before the end of the file; -1, having read nothing, when the
        /// read is too small to be worth it or direct reads do not work here, and the caller must read them itself.
        /// </summary>
        public unsafe int TryRead(long offset, byte[] buffer, int index, int count)
        {
            CheckNotDisposed();
            if (_refused || count < MinimumRead) return -1;
            StreamIO.CheckBuffer(buffer, index, count);
            IntPtr staging = Staging;
            long position = offset & ~(long)(Alignment - 1);
            int skip = (int)(offset - position);
            int copied = 0;
            while (copied < count)
            {
                int want = (int)Math.Min(StagingBytes, ((long)skip + count - copied + Alignment - 1) & ~(long)(Alignment - 1));
                int got = 0;
                while (got < want)
                {
                    long r = PRead(_fd, (byte*)staging + got, (UIntPtr)(uint)(want - got), position + got);
                    if (r > 0)
                    {
                        got += (int)r;
                        if (got % Alignment != 0) break; // only the end of the file stops a direct read short of a block
                        continue;
                    }
                    if (r == 0) break; // the end of the file
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == EINTR) continue;
                    if (Refuses(r, errno)) return -1;
                    throw Failure("read", position + got, r, errno);
                }
                int n = Math.Min(count - copied, Math.Max(0, got - skip));
                Marshal.Copy(staging + skip, buffer, index + copied, n);
                copied += n;
                DirectBytes += n;
                if (got < want) break;
                position += want;
                skip = 0;
            }
            return copied;
        }

        /// <summary>
        /// Reads <paramref name="count"/> bytes at <paramref name="position"/>, zero past the end of the file: directly
        /// through <paramref name="direct"/> where it can, else through <paramref name="file"/>.
        /// </summary>
        public static void ReadAtZeroPadded(DirectFile? direct, Stream file, long position, byte[] buffer, int index, int count)
        {
            int got = direct?.TryRead(position, buffer, index, count) ?? -1;
            if (got < 0) StreamIO.ReadAtZeroPadded(file, position, buffer, index, count);
            else if (got < count) Array.Clear(buffer, index + got, count - got);
        }

        /// <summary>
        /// Reads up to <paramref name="count"/> bytes at <paramref name="position"/> and returns how many the file had there
        /// (fewer only at its end): directly through <paramref name="direct"/> where it can, else through <paramref name="file"/>.
        /// For readers to whom bytes past the end are a damaged image, not zeros.
        /// </summary>
        public static int ReadAtMost(DirectFile? direct, Stream file, long position, byte[] buffer, int index, int count)
        {
            int got = direct?.TryRead(position, buffer, index, count) ?? -1;
            if (got >= 0) return got;
            if (position >= file.Length) return 0;
            file.Position = position;
            return StreamIO.ReadAtMost(file, buffer, index, count);
        }

        /// <summary>
        /// Writes <paramref name="count"/> bytes at <paramref name="position"/>: directly through <paramref name="direct"/>
        /// where it can, else through <paramref name="file"/>, whose writeback <paramref name="writeBehind"/> then starts.
        /// </summary>
        public static void WriteAt(DirectFile? direct, FileStream file, WriteBehind writeBehind, long position, byte[] buffer, int index, int count)
        {
            if (direct != null && direct.TryWrite(position, buffer, index, count)) return;
            StreamIO.WriteAt(file, position, buffer, index, count);
            writeBehind.Written(position + count);
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            Close(_fd);
            if (_allocation != IntPtr.Zero) Marshal.FreeHGlobal(_allocation);
        }

        /// <summary>
        /// Whether the file lies on a local disk file system whose O_DIRECT is plain direct I/O (ext2/3/4, XFS, btrfs).
        /// Elsewhere the page cache stays: on NFS, SMB or FUSE a direct transfer is a synchronous round trip to the
        /// server without readahead or write-behind, slower than the cache it avoids; tmpfs and overlay have no device.
        /// </summary>
        internal static unsafe bool OnLocalDisk(string path)
        {
            const long Ext = 0xEF53, Xfs = 0x58465342, Btrfs = 0x9123683E;
            byte* buffer = stackalloc byte[256]; // struct statfs is 120 bytes on x86-64; f_type comes first
            if (StatFs(path, buffer) != 0) return false;
            long type = *(long*)buffer;
            return type == Ext || type == Xfs || type == Btrfs;
        }

        /// <summary>A file system that opens with O_DIRECT but refuses the transfers says so at the first one.</summary>
        private bool Refuses(long result, int errno)
        {
            if (result >= 0 || errno != EINVAL || DirectBytes != 0) return false;
            _refused = true;
            return true;
        }

        private IOException Failure(string what, long at, long result, int errno) => result == 0
            ? new IOException($"{_path}: {what} at {at} moved nothing.")
            : new IOException($"{_path}: {what} at {at} failed: {Marshal.PtrToStringAnsi(StrError(errno))}", errno);

        private void CheckNotDisposed()
        {
            if (_disposed) throw new ObjectDisposedException(_path);
        }

        [DllImport("libc", EntryPoint = "open", SetLastError = true)]
        private static extern int Open([MarshalAs(UnmanagedType.LPStr)] string path, int flags);

        [DllImport("libc", EntryPoint = "pwrite", SetLastError = true)]
        private static extern unsafe long PWrite(int fd, byte* buffer, UIntPtr count, long offset);

        [DllImport("libc", EntryPoint = "pread", SetLastError = true)]
        private static extern unsafe long PRead(int fd, byte* buffer, UIntPtr count, long offset);

        [DllImport("libc", EntryPoint = "statfs", SetLastError = true)]
        private static extern unsafe int StatFs([MarshalAs(UnmanagedType.LPStr)] string path, byte* buffer);

        [DllImport("libc", EntryPoint = "close")]
        private static extern int Close(int fd);

        [DllImport("libc", EntryPoint = "strerror")]
        private static extern IntPtr StrError(int errnum);
    }
}
