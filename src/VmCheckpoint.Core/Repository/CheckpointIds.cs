using System;
using System.Collections.Generic;
using System.Linq;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>How a checkpoint id typed by a user is matched: exactly, else as a prefix of at least 4 characters.</summary>
    public static class CheckpointIds
    {
        public const int MinimumPrefix = 4;

        public static List<T> Match<T>(IEnumerable<T> items, Func<T, string> idOf, string id)
        {
            var list = items as IList<T> ?? items.ToList();
            var exact = list.Where(i => string.Equals(idOf(i), id, StringComparison.OrdinalIgnoreCase)).ToList();
            if (exact.Count > 0 || id.Length < MinimumPrefix) return exact;
            return list.Where(i => idOf(i).StartsWith(id, StringComparison.OrdinalIgnoreCase)).ToList();
        }
    }
}
