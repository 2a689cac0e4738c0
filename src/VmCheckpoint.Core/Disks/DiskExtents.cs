using System.Collections.Generic;

namespace VmCheckpoint.Core.Disks
{
    internal static class DiskExtents
    {
        /// <summary>Merges sorted extents that touch or overlap; drops empty ones.</summary>
        public static IEnumerable<DiskExtent> Merge(IEnumerable<DiskExtent> sorted)
        {
            bool havePending = false;
            long start = 0, end = 0;
            foreach (DiskExtent e in sorted)
            {
                if (e.Length == 0) continue;
                if (havePending && e.Offset <= end)
                {
                    if (e.End > end) end = e.End;
                    continue;
                }

                if (havePending) yield return new DiskExtent(start, end - start);
                start = e.Offset;
                end = e.End;
                havePending = true;
            }

            if (havePending) yield return new DiskExtent(start, end - start);
        }
    }
}
