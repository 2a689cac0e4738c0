using System;
using System.Collections.Generic;
using System.Linq;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Hypervisors.Nbd
{
    /// <summary>
    /// An NBD export (e.g. the disk of a libvirt pull-mode backup, or qemu-nbd) read through libnbd as a raw disk.
    /// Data extents come from the "base:allocation" meta context; changed extents from a dirty-bitmap context such as
    /// "qemu:dirty-bitmap:backup-vda".
    /// </summary>
    /// <remarks>
    /// Not thread-safe: one libnbd handle, one caller at a time (as <see cref="IDiskImage"/> asks). libnbd itself locks
    /// the handle, but block-status state lives in this object between a request and its callbacks.
    /// </remarks>
    public sealed class NbdDiskImage : IDiskImage
    {
        // Servers may refuse a block-status count of 2^32 or more; 1 GiB asks for plenty and stays clear of that.
        private const long BlockStatusRequest = 1L << 30;
        // libnbd refuses a pread over 32 MiB; 8 MiB reads were as fast as larger ones here.
        private const int ReadChunk = 8 << 20;
        private const int EProto = 71;

        private readonly NbdHandle _handle;
        private readonly bool _hasAllocation;
        private bool _disposed;

        private NbdDiskImage(NbdHandle handle, string path, long virtualSize, bool hasAllocation, string? dirtyBitmapContext)
        {
            _handle = handle;
            Path = path;
            VirtualSize = virtualSize;
            _hasAllocation = hasAllocation;
            DirtyBitmapContext = dirtyBitmapContext;
        }

        /// <summary>Where the export came from: the source path given at connect, or an nbd+unix URI.</summary>
        public string Path { get; }

        /// <summary>Raw: an NBD export is the guest's view of the disk, whatever format lies behind it.</summary>
        public DiskFormat Format => DiskFormat.Raw;

        public long VirtualSize { get; }

        /// <summary>The dirty-bitmap meta context negotiated at connect, or null for a full (allocation only).</summary>
        public string? DirtyBitmapContext { get; }

        /// <summary>
        /// Connects to export <paramref name="exportName"/> over the unix socket <paramref name="socketPath"/>, asking for
        /// "base:allocation" and, when given, <paramref name="dirtyBitmapContext"/> (e.g. "qemu:dirty-bitmap:backup-vda").
        /// A dirty-bitmap context the server does not offer is an error: an incremental must not silently become empty.
        /// </summary>
        /// <param name="sourcePath">What <see cref="Path"/> reports, e.g. the disk's image file; defaults to the NBD URI.</param>
        public static NbdDiskImage Connect(string socketPath, string exportName, string? dirtyBitmapContext = null, string? sourcePath = null)
        {
            if (socketPath == null) throw new ArgumentNullException(nameof(socketPath));
            if (exportName == null) throw new ArgumentNullException(nameof(exportName));
            string uri = $"nbd+unix:///{exportName}?socket={socketPath}";
            return Open(
                h =>
                {
                    if (NbdNative.nbd_set_export_name(h, exportName) == -1) throw NbdNative.LastError($"{uri}: set export name");
                    return NbdNative.nbd_connect_unix(h, socketPath);
                },
                $"cannot connect to NBD export '{exportName}' on unix socket {socketPath}",
                sourcePath ?? uri,
                dirtyBitmapContext);
        }

        /// <summary>As <see cref="Connect"/>, with the server and export named by an NBD URI (nbd://, nbd+unix://…).</summary>
        public static NbdDiskImage ConnectUri(string uri, string? dirtyBitmapContext = null, string? sourcePath = null)
        {
            if (uri == null) throw new ArgumentNullException(nameof(uri));
            return Open(h => NbdNative.nbd_connect_uri(h, uri), $"cannot connect to NBD export {uri}", sourcePath ?? uri, dirtyBitmapContext);
        }

        private static NbdDiskImage Open(Func<NbdHandle, int> connect, string connectError, string path, string? dirtyBitmapContext)
        {
            NbdHandle h = NbdNative.nbd_create();
            if (h.IsInvalid)
            {
                h.Dispose();
                throw NbdNative.LastError("nbd_create");
            }

            try
            {
                if (NbdNative.nbd_add_meta_context(h, NbdNative.MetaBaseAllocation) == -1)
                    throw NbdNative.LastError($"{path}: add meta context {NbdNative.MetaBaseAllocation}");
                if (dirtyBitmapContext != null && NbdNative.nbd_add_meta_context(h, dirtyBitmapContext) == -1)
                    throw NbdNative.LastError($"{path}: add meta context {dirtyBitmapContext}");
                if (connect(h) == -1) throw NbdNative.LastError(connectError);

                long size = NbdNative.nbd_get_size(h);
                if (size < 0) throw NbdNative.LastError($"{path}: get size");

                int hasAllocation = NbdNative.nbd_can_meta_context(h, NbdNative.MetaBaseAllocation);
                if (hasAllocation == -1) throw NbdNative.LastError($"{path}: can meta context {NbdNative.MetaBaseAllocation}");
                if (dirtyBitmapContext != null)
                {
                    int hasBitmap = NbdNative.nbd_can_meta_context(h, dirtyBitmapContext);
                    if (hasBitmap == -1) throw NbdNative.LastError($"{path}: can meta context {dirtyBitmapContext}");
                    if (hasBitmap == 0)
                        throw new NbdException($"{path}: the NBD server does not offer meta context '{dirtyBitmapContext}' (no such dirty bitmap exported).", 0);
                }

                return new NbdDiskImage(h, path, size, hasAllocation == 1, dirtyBitmapContext);
            }
            catch
            {
                h.Dispose();
                throw;
            }
        }

        /// <summary>
        /// The ranges that may hold non-zero data, from "base:allocation": extents flagged ZERO (which includes holes in
        /// QEMU's exports) are left out. Without that context on the server the whole range is returned.
        /// </summary>
        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            CheckNotDisposed();
            StreamIO.CheckRange(offset, length, VirtualSize);
            if (length == 0) return Array.Empty<DiskExtent>();
            if (!_hasAllocation) return new[] { new DiskExtent(offset, length) };
            return DiskExtents.Merge(Walk(NbdNative.MetaBaseAllocation, offset, length, flags => (flags & NbdNative.StateZero) == 0));
        }

        /// <summary>
        /// The ranges the dirty bitmap marks as changed, over the whole disk, sorted and merged. Their bounds are the
        /// bitmap's granularity (64 KiB by default in QEMU), so they cover more than the bytes written.
        /// </summary>
        public IReadOnlyList<DiskExtent> GetChangedExtents()
        {
            CheckNotDisposed();
            string context = DirtyBitmapContext
                ?? throw new InvalidOperationException($"{Path}: connected without a dirty-bitmap meta context, so there are no changed extents.");
            if (VirtualSize == 0) return Array.Empty<DiskExtent>();
            return DiskExtents.Merge(Walk(context, 0, VirtualSize, flags => (flags & NbdNative.StateDirty) != 0)).ToList();
        }

        public unsafe void Read(long offset, byte[] buffer, int index, int count)
        {
            CheckNotDisposed();
            StreamIO.CheckBuffer(buffer, index, count);
            StreamIO.CheckRange(offset, count, VirtualSize);
            fixed (byte* start = buffer)
            {
                int done = 0;
                while (done < count)
                {
                    int n = Math.Min(count - done, ReadChunk);
                    if (NbdNative.nbd_pread(_handle, start + index + done, (UIntPtr)(uint)n, (ulong)(offset + done), 0) == -1)
                        throw NbdNative.LastError($"{Path}: read [{offset + done}, +{n})");
                    done += n;
                }
            }
        }

        /// <summary>Shuts the connection down cleanly (the server sees NBD_CMD_DISC) and frees the handle.</summary>
        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            // A failed shutdown (server already gone) changes nothing for us: the handle is closed either way.
            NbdNative.nbd_shutdown(_handle, 0);
            _handle.Dispose();
        }

        /// <summary>
        /// The extents of one meta context over [offset, offset + length) that <paramref name="keep"/> accepts, clipped to
        /// the range, in order, not merged. Asks again from where each answer ended: servers may answer for less.
        /// </summary>
        private IEnumerable<DiskExtent> Walk(string context, long offset, long length, Func<uint, bool> keep)
        {
            long end = offset + length;
            var batch = new List<DiskExtent>();
            for (long pos = offset; pos < end;)
            {
                pos = BlockStatus(context, pos, end, keep, batch);
                foreach (DiskExtent e in batch) yield return e;
                batch.Clear();
            }
        }

        /// <summary>One block-status request at <paramref name="pos"/>; returns how far the answer reached (capped at end).</summary>
        private unsafe long BlockStatus(string context, long pos, long end, Func<uint, bool> keep, List<DiskExtent> into)
        {
            long reached = pos;
            bool answered = false;
            Exception? failure = null;

            // Runs inside libnbd, holding the handle's lock: no libnbd calls here, and nothing may escape.
            NbdNative.ExtentFunction callback = (userData, metaContext, extentsOffset, entries, nrEntries, error) =>
            {
                try
                {
                    if (NbdNative.PtrToUtf8(metaContext) != context) return 0;
                    if (answered) throw new NbdException($"{Path}: the NBD server answered twice for '{context}' at offset {pos}.", EProto);
                    answered = true;
                    if (extentsOffset != (ulong)pos)
                        throw new NbdException($"{Path}: the NBD server answered block status at {extentsOffset} for a request at {pos}.", EProto);

                    long cur = pos;
                    ulong n = (ulong)nrEntries;
                    for (ulong i = 0; i + 1 < n && cur < end; i += 2)
                    {
                        long extentEnd = Math.Min(cur + entries[i], end);
                        if (extentEnd > cur && keep(entries[i + 1])) into.Add(new DiskExtent(cur, extentEnd - cur));
                        cur = extentEnd;
                    }

                    reached = cur;
                    return 0;
                }
                catch (Exception e)
                {
                    failure ??= e;
                    *error = EProto;
                    return -1;
                }
            };

            var extentCallback = new NbdNative.ExtentCallback
            {
                Callback = System.Runtime.InteropServices.Marshal.GetFunctionPointerForDelegate(callback),
            };
            int rc = NbdNative.nbd_block_status(_handle, (ulong)Math.Min(end - pos, BlockStatusRequest), (ulong)pos, extentCallback, 0);
            GC.KeepAlive(callback);

            if (failure != null)
            {
                into.Clear();
                throw failure as NbdException ?? new NbdException($"{Path}: block status for '{context}' at {pos}: {failure.Message}", EProto);
            }

            if (rc == -1) throw NbdNative.LastError($"{Path}: block status for '{context}' at {pos}");
            if (reached <= pos)
                throw new NbdException($"{Path}: the NBD server gave no extents for '{context}' at offset {pos}.", EProto);
            return reached;
        }

        private void CheckNotDisposed()
        {
            if (_disposed) throw new ObjectDisposedException(Path);
        }
    }
}
