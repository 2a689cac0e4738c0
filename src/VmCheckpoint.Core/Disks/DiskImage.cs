using System;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>Opens and creates disk images, whatever their format.</summary>
    public static class DiskImage
    {
        /// <summary>Opens an image read-only, detecting its format from its content (not its name).</summary>
        public static IDiskImage Open(string path) => throw new NotImplementedException();

        /// <summary>Creates a new, empty, sparse image of the given format at <paramref name="path"/>.</summary>
        public static IDiskImageWriter Create(string path, DiskFormat format, long virtualSize) => throw new NotImplementedException();
    }
}
