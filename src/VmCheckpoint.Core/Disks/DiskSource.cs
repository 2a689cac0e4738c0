using System.Collections.Generic;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// A disk to checkpoint: a readable point-in-time view and, when the hypervisor tracks changes, the ranges
    /// changed since the parent checkpoint. Without changed ranges every data block is read and hashed, and only
    /// blocks whose hash the repository lacks are stored.
    /// </summary>
    public sealed class DiskSource
    {
        public DiskSource(string name, IDiskImage image, IReadOnlyList<DiskExtent>? changedExtents = null, string? sourcePath = null)
        {
            Name = name;
            Image = image;
            ChangedExtents = changedExtents;
            SourcePath = sourcePath ?? image.Path;
        }

        public string Name { get; }
        public IDiskImage Image { get; }
        public string SourcePath { get; }

        /// <summary>Ranges written since the parent checkpoint, or null when unknown (read every data block).</summary>
        public IReadOnlyList<DiskExtent>? ChangedExtents { get; }
    }
}
