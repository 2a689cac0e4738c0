using System.Runtime.InteropServices;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>The process "died" here: thrown by every call after a torn put, as nothing runs after a kill -9.</summary>
internal sealed class SimulatedCrashException : IOException
{
    public SimulatedCrashException(string message) : base(message) { }
}

/// <summary>
/// A real folder backend with faults injected where a share or a disk would put them: a full disk on the Nth write, an
/// I/O error on reads or listings of chosen objects, and a put torn at a chosen byte by a crash of the process. The
/// repository above cannot tell it from the real thing, so tests prove its crash-safety rules without a live share.
/// </summary>
internal sealed class FaultInjectingBackend : IRepositoryBackend
{
    private static readonly bool Windows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
    // What the runtime puts in IOException.HResult for these errors: the errno on Unix, HRESULT_FROM_WIN32 on Windows.
    public static readonly int DiskFull = Windows ? unchecked((int)0x80070070) : 28;   // ERROR_DISK_FULL / ENOSPC
    public static readonly int IoError = Windows ? unchecked((int)0x8007045D) : 5;     // ERROR_IO_DEVICE / EIO

    private readonly object _gate = new();
    private readonly List<Writer> _openWriters = new();
    private int _writes;
    private int _puts;
    private int? _diskFullAtWrite;
    private (int Put, long AtByte)? _tear;

    public FaultInjectingBackend(LocalFolderBackend inner)
    {
        Inner = inner;
    }

    public LocalFolderBackend Inner { get; }

    /// <summary>Every put started (<see cref="Put"/> or <see cref="OpenWrite"/>), in order, with the bytes it committed (null: it never did).</summary>
    public List<(string Name, long? Length)> PutLog { get; } = new();

    /// <summary>Reads of objects this matches fail with EIO (at the read, after a successful open).</summary>
    public Func<string, bool>? FailReads { get; set; }

    /// <summary>Listings of prefixes this matches fail with EIO.</summary>
    public Func<string, bool>? FailLists { get; set; }

    /// <summary>Puts of objects this matches fail with EIO before a byte is written (a share that stopped answering).</summary>
    public Func<string, bool>? FailPuts { get; set; }

    /// <summary>Deletes of objects this matches fail with EIO and delete nothing.</summary>
    public Func<string, bool>? FailDeletes { get; set; }

    /// <summary>Opening objects this matches for reading is refused (UnauthorizedAccessException: no permission).</summary>
    public Func<string, bool>? DenyReads { get; set; }

    /// <summary>Called before every read of an object (tests slow reads down with it).</summary>
    public Action<string>? BeforeRead { get; set; }

    public bool Crashed { get; private set; }

    /// <summary>The <paramref name="n"/>th write from now (a Put, a writer's Write or Commit; 1-based) fails with ENOSPC, once.</summary>
    public void DiskFullAtWrite(int n)
    {
        lock (_gate)
        {
            _writes = 0;
            _diskFullAtWrite = n;
        }
    }

    /// <summary>
    /// The <paramref name="put"/>th put from now (1-based) is cut after <paramref name="atByte"/> bytes (at or past its end:
    /// all written, never committed) by a crash: the temporary stays as a killed process leaves it, and every later call fails.
    /// </summary>
    public void TearPut(int put, long atByte)
    {
        lock (_gate)
        {
            _puts = 0;
            _tear = (put, atByte);
        }
    }

    /// <summary>A new process on the same folder: no faults, nothing crashed, counters at zero.</summary>
    public void Reset()
    {
        lock (_gate)
        {
            Crashed = false;
            _diskFullAtWrite = null;
            _tear = null;
            _writes = _puts = 0;
            FailReads = null;
            FailLists = null;
            FailPuts = null;
            FailDeletes = null;
            DenyReads = null;
            BeforeRead = null;
            PutLog.Clear();
            _openWriters.Clear();
        }
    }

    public string Location => Inner.Location;
    public string Locate(string name) => Inner.Locate(name);

    public bool LocationExists()
    {
        CheckAlive();
        return Inner.LocationExists();
    }

    public void CreateLocation(IReadOnlyCollection<string> prefixes)
    {
        CheckAlive();
        Inner.CreateLocation(prefixes);
    }

    public void Put(string name, byte[] content)
    {
        using var writer = OpenWrite(name);
        writer.Write(content, 0, content.Length);
        writer.Commit();
    }

    public IObjectWriter OpenWrite(string name)
    {
        CheckAlive();
        if (FailPuts?.Invoke(name) == true) throw new IOException($"{Inner.Locate(name)}: Input/output error (injected)", IoError);
        long? tearAt = null;
        lock (_gate)
        {
            if (_tear is { } t && ++_puts == t.Put)
            {
                tearAt = t.AtByte;
                _tear = null;
            }
        }
        var writer = new Writer(this, name, Inner.OpenWrite(name), tearAt);
        lock (_gate)
        {
            PutLog.Add((name, null));
            _openWriters.Add(writer);
        }
        return writer;
    }

    public IObjectReader OpenRead(string name)
    {
        CheckAlive();
        if (DenyReads?.Invoke(name) == true) throw new UnauthorizedAccessException($"Access to the path '{Inner.Locate(name)}' is denied (injected).");
        return new Reader(this, name, Inner.OpenRead(name));
    }

    public ObjectInfo? GetInfo(string name)
    {
        CheckAlive();
        return Inner.GetInfo(name);
    }

    public IReadOnlyList<ObjectInfo> List(string prefix)
    {
        CheckAlive();
        if (FailLists?.Invoke(prefix) == true) throw new IOException($"{Inner.Locate(prefix.TrimEnd('/'))}: Input/output error (injected)", IoError);
        return Inner.List(prefix);
    }

    public void Delete(string name)
    {
        CheckAlive();
        if (FailDeletes?.Invoke(name) == true) throw new IOException($"{Inner.Locate(name)}: Input/output error (injected)", IoError);
        Inner.Delete(name);
    }

    public int RemoveAbandoned(TimeSpan olderThan)
    {
        CheckAlive();
        return Inner.RemoveAbandoned(olderThan);
    }

    private void CheckAlive()
    {
        if (Crashed) throw new SimulatedCrashException("The process has crashed (injected): nothing runs after a kill.");
    }

    /// <summary>Counts one write; true when it is the one to fail with a full disk.</summary>
    private bool DiskFullNow()
    {
        lock (_gate)
        {
            if (_diskFullAtWrite is not { } n || ++_writes != n) return false;
            _diskFullAtWrite = null;
            return true;
        }
    }

    private static IOException DiskFullError(string path) => new($"{path}: No space left on device (injected)", DiskFull);

    /// <summary>Dies: every writer still open is left as a killed process leaves it (its temporary in place).</summary>
    private SimulatedCrashException Crash(string name, long atByte)
    {
        lock (_gate)
        {
            Crashed = true;
            foreach (var w in _openWriters) w.Abandon();
            _openWriters.Clear();
        }
        return new SimulatedCrashException($"Crashed (injected) while putting {name}, after {atByte} bytes.");
    }

    private sealed class Writer : IObjectWriter
    {
        private readonly FaultInjectingBackend _owner;
        private readonly string _name;
        private readonly IObjectWriter _inner;
        private readonly long? _tearAt;
        private bool _abandoned;

        public Writer(FaultInjectingBackend owner, string name, IObjectWriter inner, long? tearAt)
        {
            _owner = owner;
            _name = name;
            _inner = inner;
            _tearAt = tearAt;
        }

        public long Length => _inner.Length;

        public void Write(byte[] buffer, int index, int count)
        {
            _owner.CheckAlive();
            if (_tearAt is { } at && _inner.Length + count > at)
            {
                int part = (int)Math.Max(0, at - _inner.Length);
                _inner.Write(buffer, index, part);
                throw _owner.Crash(_name, at);
            }
            if (_owner.DiskFullNow())
            {
                // Part of it reached the file, as when a disk fills in the middle of a write.
                _inner.Write(buffer, index, count / 2);
                throw DiskFullError(_owner.Locate(_name));
            }
            _inner.Write(buffer, index, count);
        }

        public void Commit()
        {
            _owner.CheckAlive();
            if (_tearAt is not null) throw _owner.Crash(_name, _inner.Length); // everything written, killed before the rename
            if (_owner.DiskFullNow()) throw DiskFullError(_owner.Locate(_name)); // the final flush found the disk full
            _inner.Commit();
            lock (_owner._gate)
            {
                int i = _owner.PutLog.FindLastIndex(p => p.Name == _name && p.Length is null);
                if (i >= 0) _owner.PutLog[i] = (_name, _inner.Length);
                _owner._openWriters.Remove(this);
            }
        }

        /// <summary>Closes the file under the writer, leaving its temporary in place.</summary>
        public void Abandon()
        {
            _abandoned = true;
            if (_inner is LocalFolderBackend.Writer local) local.Abandon();
        }

        public void Dispose()
        {
            lock (_owner._gate) _owner._openWriters.Remove(this);
            if (_abandoned || _owner.Crashed) return; // a dead process cleans nothing up
            _inner.Dispose();
        }
    }

    private sealed class Reader : IObjectReader
    {
        private readonly FaultInjectingBackend _owner;
        private readonly string _name;
        private readonly IObjectReader _inner;

        public Reader(FaultInjectingBackend owner, string name, IObjectReader inner)
        {
            _owner = owner;
            _name = name;
            _inner = inner;
        }

        public long Length => _inner.Length;

        public int ReadAt(long offset, byte[] buffer, int index, int count)
        {
            _owner.CheckAlive();
            _owner.BeforeRead?.Invoke(_name);
            if (_owner.FailReads?.Invoke(_name) == true)
                throw new IOException($"{_owner.Locate(_name)}: Input/output error (injected) at {offset}", IoError);
            return _inner.ReadAt(offset, buffer, index, count);
        }

        public void Dispose() => _inner.Dispose();
    }
}
