using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using LiteDB;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    public enum LockKind
    {
        /// <summary>Adds data (a checkpoint run). Many may hold it at once.</summary>
        Shared,
        /// <summary>Removes data (reclaiming blocks). Excludes every other lock.</summary>
        Exclusive,
    }

    /// <summary>The repository is locked by another process for longer than the caller would wait.</summary>
    public sealed class RepositoryLockedException : IOException
    {
        public RepositoryLockedException(string message) : base(message) { }
    }

    /// <summary>
    /// This process's lock on the repository could not be kept (refreshes failed until another process could take it
    /// for stale, or another process removed it): the job under it stopped rather than go on unprotected.
    /// </summary>
    public sealed class RepositoryLockLostException : IOException
    {
        public RepositoryLockLostException(string message, Exception? inner) : base(message, inner) { }
    }

    /// <summary>When a lock is refreshed, and when a holder that cannot refresh it gives up.</summary>
    internal sealed class LockTimings
    {
        public static readonly LockTimings Default = new LockTimings(TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(30), TimeSpan.FromMinutes(15));

        public LockTimings(TimeSpan refreshEvery, TimeSpan retryEvery, TimeSpan giveUpAfter)
        {
            if (giveUpAfter >= RepositoryLock.StaleAfter) throw new ArgumentOutOfRangeException(nameof(giveUpAfter), "A holder must give up before its lock can be taken for stale.");
            RefreshEvery = refreshEvery;
            RetryEvery = retryEvery;
            GiveUpAfter = giveUpAfter;
        }

        /// <summary>A held lock is written anew this often.</summary>
        public TimeSpan RefreshEvery { get; }
        /// <summary>After a failed refresh, the next try comes this soon.</summary>
        public TimeSpan RetryEvery { get; }
        /// <summary>
        /// A lock not refreshed for this long is lost: the job under it is cancelled. Half of <see cref="RepositoryLock.StaleAfter"/>
        /// by default, leaving the job time to stop (and clocks of other hosts room to differ) before anyone may take the lock
        /// for stale.
        /// </summary>
        public TimeSpan GiveUpAfter { get; }
    }

    /// <summary>
    /// A lock is a small object under locks/ naming its holder. A lock is stale, and ignored, when its holder is a
    /// process of this host that no longer runs, or when it has not been refreshed for <see cref="StaleAfter"/>
    /// (a holder on another host that died). Holders refresh their lock while they run; a holder that cannot (the share
    /// stopped answering, its lock was removed by another process) loses it before it could be taken for stale:
    /// <see cref="LostToken"/> is cancelled, and the job running under it (<see cref="Run{T}"/>) stops.
    /// </summary>
    internal sealed class RepositoryLock : IDisposable
    {
        public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(30);

        private readonly RepositoryLayout _layout;
        private readonly LockTimings _timings;
        private readonly object _gate = new object();
        /// <summary>Refreshes on a thread of its own: a thread pool busy with the job's work must not starve the lock.</summary>
        private readonly Thread _refresher;
        private readonly ManualResetEventSlim _stop = new ManualResetEventSlim(false);
        private readonly Stopwatch _sinceRefresh = Stopwatch.StartNew();
        private readonly CancellationTokenSource _lost = new CancellationTokenSource();
        /// <summary>Our own earlier locks a delete failed on: deleted at the next refresh, or at the end.</summary>
        private readonly List<string> _leftovers = new List<string>();
        private string _name;
        private string? _lostReason;
        private Exception? _lostCause;
        private bool _disposed;

        private RepositoryLock(RepositoryLayout layout, LockKind kind, string name, LockTimings timings)
        {
            _layout = layout;
            _timings = timings;
            Kind = kind;
            _name = name;
            _refresher = new Thread(RefreshLoop) { IsBackground = true, Name = "VmCheckpoint lock refresh" };
            _refresher.Start();
        }

        public LockKind Kind { get; }

        /// <summary>Cancelled when the lock is lost; a job links its own token with it (<see cref="Run{T}"/>).</summary>
        public CancellationToken LostToken => _lost.Token;

        public bool IsLost => _lost.IsCancellationRequested;

        public static RepositoryLock Acquire(RepositoryLayout layout, LockKind kind, TimeSpan wait, CancellationToken cancellationToken, LockTimings? timings = null)
        {
            var deadline = DateTime.UtcNow + wait;
            var random = new Random();
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var name = Write(layout, kind);
                string? conflict;
                try
                {
                    conflict = FindConflict(layout, kind, name);
                }
                catch
                {
                    TryDelete(layout, name); // the locks cannot be read (share unreachable, no permission): fail, leaving nothing behind
                    throw;
                }
                if (conflict is null) return new RepositoryLock(layout, kind, name, timings ?? LockTimings.Default);
                TryDelete(layout, name);
                if (DateTime.UtcNow >= deadline)
                    throw new RepositoryLockedException(
                        $"The repository {layout.Root} is locked by {conflict} " +
                        (kind == LockKind.Exclusive ? "(a checkpoint is running)." : "(blocks are being reclaimed)."));
                // Two contenders that see each other both back off; random delays break the tie.
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(200 + random.Next(800)));
            }
        }

        /// <summary>
        /// Runs a job under this lock: its token is cancelled by the caller's or by the loss of the lock, and a loss
        /// surfaces as <see cref="RepositoryLockLostException"/>, never as a plain cancellation.
        /// </summary>
        public T Run<T>(CancellationToken cancellationToken, Func<CancellationToken, T> work)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lost.Token);
            try
            {
                return work(linked.Token);
            }
            catch (OperationCanceledException) when (IsLost && !cancellationToken.IsCancellationRequested)
            {
                throw LostException();
            }
        }

        /// <summary>Throws <see cref="RepositoryLockLostException"/> if the lock was lost.</summary>
        public void ThrowIfLost()
        {
            if (IsLost) throw LostException();
        }

        private RepositoryLockLostException LostException()
        {
            lock (_gate) return new RepositoryLockLostException($"The lock on the repository {_layout.Root} was lost: {_lostReason} The job stopped rather than go on unprotected.", _lostCause);
        }

        private static string Write(RepositoryLayout layout, LockKind kind)
        {
            var name = layout.LockName(Hex.Random(16));
            layout.Backend.Put(name, Describe(kind));
            return name;
        }

        /// <summary>Removes a lock if it can; one left behind is stale in <see cref="StaleAfter"/> at most.</summary>
        private static bool TryDelete(RepositoryLayout layout, string name)
        {
            try
            {
                layout.Backend.Delete(name);
                return true;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            return false;
        }

        private static IEnumerable<string> ListLocks(RepositoryLayout layout) =>
            layout.Backend.List(RepositoryLayout.LocksPrefix).Select(o => o.Name).Where(n => n.EndsWith(RepositoryLayout.LockSuffix, StringComparison.Ordinal));

        private static byte[] Describe(LockKind kind)
        {
            using var me = Process.GetCurrentProcess();
            var doc = new BsonDocument
            {
                ["kind"] = kind.ToString().ToLowerInvariant(),
                ["host"] = Environment.MachineName,
                ["pid"] = me.Id,
                ["processStart"] = me.StartTime.ToUniversalTime().ToString("o"),
                ["time"] = DateTime.UtcNow.ToString("o"),
            };
            return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(doc));
        }

        /// <summary>Describes a live lock that conflicts with taking <paramref name="kind"/>, or null.</summary>
        private static string? FindConflict(RepositoryLayout layout, LockKind kind, string own)
        {
            foreach (var name in ListLocks(layout))
            {
                if (string.Equals(name, own, StringComparison.Ordinal)) continue;
                var holder = ReadHolder(layout, name, out bool gone);
                if (holder is null)
                {
                    // A lock whose holder is known gone (a process of this host that no longer runs, or one not
                    // refreshed for StaleAfter) goes now, so that kill -9 leaves nothing for the admin to clean.
                    if (gone) TryDelete(layout, name);
                    continue;
                }
                if (kind == LockKind.Shared && holder.Value.Kind == LockKind.Shared) continue;
                return holder.Value.Description;
            }
            return null;
        }

        private static (LockKind Kind, string Description)? ReadHolder(RepositoryLayout layout, string name) => ReadHolder(layout, name, out _);

        /// <param name="gone">True when the lock is a holder's that is known gone (dead, or stale), not merely released or unreadable.</param>
        private static (LockKind Kind, string Description)? ReadHolder(RepositoryLayout layout, string name, out bool gone)
        {
            gone = false;
            BsonDocument doc;
            try
            {
                doc = (BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(layout.Backend.ReadAll(name)));
            }
            catch (ObjectNotFoundException)
            {
                return null; // released meanwhile
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException)
            {
                return null; // not ours to understand: a torn lock cannot exist (atomic writes)
            }
            catch (UnauthorizedAccessException e)
            {
                // Not being allowed to read a lock says nothing of its holder: it may be live.
                throw new UnauthorizedAccessException(
                    $"The lock {layout.Backend.Locate(name)} cannot be read ({e.Message}). It may be a live holder's, so the repository is not used: " +
                    "give this account read access to the repository's locks folder, or remove the lock if its holder is gone.", e);
            }
            // Any other I/O error (a share that stopped answering) goes to the caller: a lock that cannot be read
            // may be a live holder's, and taking it for none would let a checkpoint and reclaiming run together.
            var kind = doc["kind"].AsString == "exclusive" ? LockKind.Exclusive : LockKind.Shared;
            var host = doc["host"].AsString ?? "";
            int pid = doc["pid"].AsInt32;
            DateTime.TryParse(doc["time"].AsString, null, System.Globalization.DateTimeStyles.RoundtripKind, out var time);
            if (DateTime.UtcNow - time.ToUniversalTime() > StaleAfter) { gone = true; return null; }
            if (string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase) && !IsAlive(pid, doc["processStart"].AsString))
            {
                gone = true;
                return null;
            }
            return (kind, $"process {pid} on {host} (since {time.ToUniversalTime():u})");
        }

        private static bool IsAlive(int pid, string? startTime)
        {
            try
            {
                using var p = Process.GetProcessById(pid);
                if (p.HasExited) return false;
                // A recycled pid belongs to a process that started later than the lock's holder.
                if (startTime != null && DateTime.TryParse(startTime, null, System.Globalization.DateTimeStyles.RoundtripKind, out var started))
                    return Math.Abs((p.StartTime.ToUniversalTime() - started.ToUniversalTime()).TotalSeconds) < 2;
                return true;
            }
            catch (ArgumentException)
            {
                return false;
            }
            catch (InvalidOperationException)
            {
                return false;
            }
        }

        /// <summary>Removes locks whose holders are gone (a lock that cannot be read is an error, as when acquiring).</summary>
        public static int RemoveStale(RepositoryLayout layout)
        {
            int removed = 0;
            foreach (var name in ListLocks(layout).ToList())
            {
                if (ReadHolder(layout, name) is null)
                {
                    TryDelete(layout, name);
                    removed++;
                }
            }
            return removed;
        }

        private void RefreshLoop()
        {
            var next = _timings.RefreshEvery;
            while (!_stop.Wait(next))
            {
                var after = Refresh();
                if (after is null) return;
                next = after.Value;
            }
        }

        /// <summary>
        /// Writes the lock anew, then removes the old one. A refresh that fails is tried again soon; once the lock has
        /// gone unrefreshed for <see cref="LockTimings.GiveUpAfter"/>, or was removed by someone else, it is lost.
        /// </summary>
        /// <returns>When to refresh next, or null: the lock is lost or released.</returns>
        private TimeSpan? Refresh()
        {
            string? lostReason = null;
            lock (_gate)
            {
                if (_disposed || IsLost) return null;
                TimeSpan next;
                if (_sinceRefresh.Elapsed >= _timings.GiveUpAfter)
                {
                    // Asleep too long (a suspended host, a starved process): another process may already take it for stale.
                    lostReason = $"it was last refreshed {_sinceRefresh.Elapsed.TotalSeconds:0} s ago, and may be taken for stale from {StaleAfter.TotalSeconds:0} s on" + (_lostCause is null ? "." : $" (the last refresh failed: {_lostCause.Message}).");
                }
                else
                {
                    try
                    {
                        if (_layout.Backend.GetInfo(_name) is null)
                        {
                            lostReason = $"{_layout.Backend.Locate(_name)} was removed by another process.";
                        }
                        else
                        {
                            var fresh = Write(_layout, Kind);
                            _leftovers.Add(_name);
                            _name = fresh;
                            _sinceRefresh.Restart();
                            _lostCause = null;
                            _leftovers.RemoveAll(old => TryDelete(_layout, old));
                        }
                    }
                    catch (Exception e)
                    {
                        // Whatever failed (I/O, permissions, anything else: this thread must never die of it) is tried
                        // again below, until it is too late.
                        _lostCause = e;
                    }
                }
                if (lostReason is null)
                {
                    var left = _timings.GiveUpAfter - _sinceRefresh.Elapsed;
                    next = _lostCause is null ? _timings.RefreshEvery : (left < _timings.RetryEvery ? left : _timings.RetryEvery);
                    return next < TimeSpan.Zero ? TimeSpan.Zero : next;
                }
                _lostReason = lostReason;
            }
            _lost.Cancel(); // outside the gate: the jobs' cancellation callbacks run here
            return null;
        }

        public void Dispose()
        {
            lock (_gate)
            {
                if (_disposed) return;
                _disposed = true;
            }
            _stop.Set();
            if (Thread.CurrentThread != _refresher)
            {
                _refresher.Join();
                _stop.Dispose();
            }
            TryDelete(_layout, _name);
            foreach (var old in _leftovers) TryDelete(_layout, old);
        }
    }
}
