using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Which checkpoints of one VM to keep: the newest <see cref="KeepLast"/>, and the newest of each of the last
    /// <see cref="KeepDaily"/> days, <see cref="KeepWeekly"/> ISO weeks and <see cref="KeepMonthly"/> months that
    /// have checkpoints (UTC). A checkpoint any rule keeps is kept. Checkpoints are never chained, so removing
    /// any of them never breaks another.
    /// </summary>
    public sealed class RetentionPolicy
    {
        public int KeepLast { get; set; }
        public int KeepDaily { get; set; }
        public int KeepWeekly { get; set; }
        public int KeepMonthly { get; set; }

        public bool IsEmpty => KeepLast <= 0 && KeepDaily <= 0 && KeepWeekly <= 0 && KeepMonthly <= 0;

        /// <summary>Returns the ids to keep among one VM's checkpoints.</summary>
        public HashSet<string> SelectKept(IEnumerable<(string Id, DateTime Time)> checkpoints)
        {
            if (IsEmpty) throw new InvalidOperationException("A retention policy needs at least one of KeepLast, KeepDaily, KeepWeekly or KeepMonthly.");
            var newestFirst = checkpoints.OrderByDescending(c => c.Time).ThenByDescending(c => c.Id, StringComparer.Ordinal).ToList();
            var keep = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in newestFirst.Take(Math.Max(0, KeepLast))) keep.Add(c.Id);
            KeepPerPeriod(newestFirst, KeepDaily, t => t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), keep);
            KeepPerPeriod(newestFirst, KeepWeekly, IsoWeek, keep);
            KeepPerPeriod(newestFirst, KeepMonthly, t => t.ToString("yyyy-MM", CultureInfo.InvariantCulture), keep);
            return keep;
        }

        private static void KeepPerPeriod(List<(string Id, DateTime Time)> newestFirst, int count, Func<DateTime, string> period, HashSet<string> keep)
        {
            if (count <= 0) return;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var c in newestFirst)
            {
                if (seen.Count >= count) break;
                if (seen.Add(period(c.Time.ToUniversalTime()))) keep.Add(c.Id);
            }
        }

        private static string IsoWeek(DateTime t)
        {
            // ISO 8601: the week belongs to the year of its Thursday.
            var thursday = t.Date.AddDays(3 - ((int)t.DayOfWeek + 6) % 7);
            int week = (thursday.DayOfYear - 1) / 7 + 1;
            return $"{thursday.Year}-W{week:00}";
        }
    }
}
