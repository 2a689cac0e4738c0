using System.Collections.Generic;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// An image that found damage its guest data does not depend on (a qcow2's refcount or snapshot table, a VHD's
    /// missing footer copy), read the data anyway and says so. Each warning names its file; an image's list holds its
    /// backing chain's too. See <see cref="DiskImage.GetWarnings"/>.
    /// </summary>
    internal interface IImageWarnings
    {
        IReadOnlyList<string> Warnings { get; }
    }
}
