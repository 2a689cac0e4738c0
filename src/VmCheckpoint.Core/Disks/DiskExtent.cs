using System;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>A range of guest offsets, [Offset, Offset + Length).</summary>
    public readonly struct DiskExtent : IEquatable<DiskExtent>
    {
        public DiskExtent(long offset, long length)
        {
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            if (length < 0) throw new ArgumentOutOfRangeException(nameof(length));
            Offset = offset;
            Length = length;
        }

        public long Offset { get; }
        public long Length { get; }
        public long End => Offset + Length;

        public bool Equals(DiskExtent other) => Offset == other.Offset && Length == other.Length;
        public override bool Equals(object? obj) => obj is DiskExtent e && Equals(e);
        public override int GetHashCode() => (Offset.GetHashCode() * 397) ^ Length.GetHashCode();
        public override string ToString() => $"[{Offset}, {End})";
    }
}
