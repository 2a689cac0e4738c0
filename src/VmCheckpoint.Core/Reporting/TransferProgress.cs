using System;
using System.Diagnostics;
using System.Globalization;

namespace VmCheckpoint.Core.Reporting
{
    /// <summary>
    /// Progress of a long transfer in the words an admin watches a bar for: bytes done of the total, the rate, and
    /// the time left ("vda (1 of 2): 1.2 of 3.0 GiB, 250 MB/s, 7 s left"). The percentage goes with it.
    /// </summary>
    public sealed class TransferProgress
    {
        private readonly IJobReporter _reporter;
        private readonly string _activity;
        private readonly string _status;
        private readonly long _unit;
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private int _lastPercent = -1;
        private long _lastReport;

        /// <param name="unit">Bytes per counted item (the block size when blocks are counted; 1 for bytes).</param>
        public TransferProgress(IJobReporter reporter, string activity, string status, long unit = 1)
        {
            _reporter = reporter;
            _activity = activity;
            _status = status;
            _unit = Math.Max(1, unit);
        }

        public void Start() => _reporter.Progress(_activity, _status, 0);

        /// <summary>Reports <paramref name="done"/> of <paramref name="total"/> items; at most a few times a second.</summary>
        public void Report(long done, long total)
        {
            int percent = total <= 0 ? 100 : (int)Math.Min(100, 100 * done / total);
            long now = _clock.ElapsedMilliseconds;
            lock (_clock)
            {
                if (percent == _lastPercent && done < total) return;
                if (done < total && now - _lastReport < 250 && percent - _lastPercent < 5) return;
                _lastPercent = percent;
                _lastReport = now;
            }
            _reporter.Progress(_activity, Describe(_status, done * _unit, total * _unit, _clock.Elapsed), percent);
        }

        /// <summary>The status line: what, bytes done of total, rate and time left once a rate is known.</summary>
        public static string Describe(string status, long doneBytes, long totalBytes, TimeSpan elapsed)
        {
            string text = $"{status}: {Size(doneBytes)} of {Size(totalBytes)}";
            if (elapsed.TotalSeconds < 0.5 || doneBytes <= 0) return text;
            double rate = doneBytes / elapsed.TotalSeconds;
            text += $", {Size((long)rate)}/s";
            if (doneBytes < totalBytes) text += ", " + Duration(TimeSpan.FromSeconds((totalBytes - doneBytes) / rate)) + " left";
            return text;
        }

        public static string Size(long bytes)
        {
            string[] units = { "B", "KiB", "MiB", "GiB", "TiB" };
            double value = bytes;
            int u = 0;
            while (value >= 1024 && u < units.Length - 1) { value /= 1024; u++; }
            return u == 0 ? $"{bytes} B" : value.ToString(value < 10 ? "0.0" : "0", CultureInfo.InvariantCulture) + " " + units[u];
        }

        public static string Duration(TimeSpan t) =>
            t.TotalHours >= 1 ? $"{(int)t.TotalHours} h {t.Minutes:00} min"
            : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes} min {t.Seconds:00} s"
            : $"{Math.Max(1, (int)Math.Ceiling(t.TotalSeconds))} s";
    }
}
