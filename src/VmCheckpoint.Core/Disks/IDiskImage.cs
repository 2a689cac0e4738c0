using System;
using System.Collections.Generic;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// A virtual disk as its guest sees it, opened read-only. Implementations follow backing chains
    /// (qcow2 backing files, VHDX parents) so that what is read is the disk the guest sees.
    /// Not thread-safe: one reader at a time.
    /// </summary>
    public interface IDiskImage : IDisposable
    {
        /// <summary>The file that was opened (the top of a chain).</summary>
        string Path { get; }

        DiskFormat Format { get; }

        /// <summary>Size of the disk in bytes, as the guest sees it.</summary>
        long VirtualSize { get; }

        /// <summary>
        /// The ranges within [offset, offset + length) that may hold non-zero data, sorted, non-overlapping
        /// and merged when adjacent. Unallocated ranges and ranges the format knows to be zero are left out,
        /// so a sparse disk is walked at the speed of its data, not of its virtual size.
        /// </summary>
        IEnumerable<DiskExtent> GetDataExtents(long offset, long length);

        /// <summary>
        /// Reads <paramref name="count"/> guest bytes at <paramref name="offset"/>; ranges outside the data
        /// extents read as zero. Reading past <see cref="VirtualSize"/> throws ArgumentOutOfRangeException.
        /// A corrupt image throws <see cref="CorruptImageException"/>.
        /// </summary>
        void Read(long offset, byte[] buffer, int index, int count);
    }

    /// <summary>
    /// Writes a new image file (a restore target). Writes must come in ascending, non-overlapping order;
    /// ranges never written read as zero and take no space. Nothing is usable until <see cref="Complete"/>.
    /// </summary>
    public interface IDiskImageWriter : IDisposable
    {
        string Path { get; }
        DiskFormat Format { get; }
        long VirtualSize { get; }

        /// <summary>Writes guest bytes at <paramref name="offset"/>. All-zero clusters may be skipped.</summary>
        void Write(long offset, byte[] buffer, int index, int count);

        /// <summary>Writes the metadata and flushes the file to stable storage.</summary>
        void Complete();
    }
}
