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
    /// A lock is a small object under locks/ naming its holder. A lock is stale, and ignored, when its holder is a
    /// process of this host that no longer runs, or when it has not been refreshed for <see cref="StaleAfter"/>
    /// (a holder on another host that died). Holders refresh their lock while they run.
    /// </summary>
    internal sealed class RepositoryLock : IDisposable
    {
        public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(30);
        private static readonly TimeSpan RefreshEvery = TimeSpan.FromMinutes(5);

        private readonly RepositoryLayout _layout;
        private readonly Timer _refresh;
        private string _name;
        private bool _disposed;

        private RepositoryLock(RepositoryLayout layout, LockKind kind, string name)
        {
            _layout = layout;
            Kind = kind;
            _name = name;
            _refresh = new Timer(_ => Refresh(), null, RefreshEvery, RefreshEvery);
        }

        public LockKind Kind { get; }

        public static RepositoryLock Acquire(RepositoryLayout layout, LockKind kind, TimeSpan wait, CancellationToken cancellationToken)
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
                    TryDelete(layout, name); // the locks cannot be read (share unreachable): fail, leaving nothing behind
                    throw;
                }
                if (conflict is null) return new RepositoryLock(layout, kind, name);
                TryDelete(layout, name);
                if (DateTime.UtcNow >= deadline)
                    throw new RepositoryLockedException(
                        $"The repository {layout.Root} is locked by {conflict} " +
                        (kind == LockKind.Exclusive ? "(a checkpoint is running)." : "(blocks are being reclaimed)."));
                // Two contenders that see each other both back off; random delays break the tie.
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(200 + random.Next(800)));
            }
        }

        private static string Write(RepositoryLayout layout, LockKind kind)
        {
            var name = layout.LockName(Hex.Random(16));
            layout.Backend.Put(name, Describe(kind));
            return name;
        }

        /// <summary>Removes a lock if it can; one left behind is stale in <see cref="StaleAfter"/> at most.</summary>
        private static void TryDelete(RepositoryLayout layout, string name)
        {
            try { layout.Backend.Delete(name); } catch (IOException) { } catch (UnauthorizedAccessException) { }
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
                var holder = ReadHolder(layout, name);
                if (holder is null) continue;
                if (kind == LockKind.Shared && holder.Value.Kind == LockKind.Shared) continue;
                return holder.Value.Description;
            }
            return null;
        }

        private static (LockKind Kind, string Description)? ReadHolder(RepositoryLayout layout, string name)
        {
            BsonDocument doc;
            try
            {
                doc = (BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(layout.Backend.ReadAll(name)));
            }
            catch (ObjectNotFoundException)
            {
                return null; // released meanwhile
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is UnauthorizedAccessException)
            {
                return null; // not ours to understand: a torn lock cannot exist (atomic writes)
            }
            // Any other I/O error (a share that stopped answering) goes to the caller: a lock that cannot be read
            // may be a live holder's, and taking it for none would let a checkpoint and reclaiming run together.
            var kind = doc["kind"].AsString == "exclusive" ? LockKind.Exclusive : LockKind.Shared;
            var host = doc["host"].AsString ?? "";
            int pid = doc["pid"].AsInt32;
            DateTime.TryParse(doc["time"].AsString, null, System.Globalization.DateTimeStyles.RoundtripKind, out var time);
            if (DateTime.UtcNow - time.ToUniversalTime() > StaleAfter) return null;
            if (string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase) && !IsAlive(pid, doc["processStart"].AsString))
                return null;
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

        /// <summary>Removes locks whose holders are gone.</summary>
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

        private void Refresh()
        {
            lock (_refresh)
            {
                if (_disposed) return;
                try
                {
                    var fresh = Write(_layout, Kind);
                    TryDelete(_layout, _name);
                    _name = fresh;
                }
                catch (IOException)
                {
                    // The share is unreachable for now; the next refresh tries again.
                }
            }
        }

        public void Dispose()
        {
            lock (_refresh)
            {
                if (_disposed) return;
                _disposed = true;
            }
            _refresh.Dispose();
            TryDelete(_layout, _name);
        }
    }
}
