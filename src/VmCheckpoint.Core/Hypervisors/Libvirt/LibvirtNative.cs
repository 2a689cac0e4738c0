using System;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>
    /// The libvirt C API (libvirt.so.0), only the calls VmCheckpoint makes. Strings go in as UTF-8: that is how .NET
    /// marshals LPStr on Linux, the only platform with libvirt.so.0 (netstandard2.0 lacks LPUTF8Str).
    /// </summary>
    internal static class LibvirtNative
    {
        private const string Lib = "libvirt.so.0";

        // virDomainState
        public const int StateNoState = 0, StateRunning = 1, StateBlocked = 2, StatePaused = 3, StateShutdown = 4, StateShutoff = 5, StateCrashed = 6, StatePmSuspended = 7;
        // virDomainShutoffReason
        public const int ShutoffCrashed = 3, ShutoffFailed = 6;
        // virDomainPausedReason
        public const int PausedIoError = 5;
        // virDomainXMLFlags
        public const uint XmlSecure = 1, XmlInactive = 2, XmlMigratable = 8;
        // virDomainSaveRestoreFlags
        public const uint SaveRunning = 2, SavePaused = 4;
        // virDomainCheckpointDeleteFlags
        public const uint CheckpointDeleteMetadataOnly = 2;
        // virDomainUndefineFlagsValues
        public const uint UndefineManagedSave = 1, UndefineSnapshotsMetadata = 2, UndefineNvram = 4, UndefineCheckpointsMetadata = 16;
        // virError codes worth naming
        public const int ErrNoDomain = 42, ErrOperationInvalid = 55, ErrAgentUnresponsive = 86, ErrCheckpointInconsistent = 109, ErrNoDomainCheckpoint = 102;

        [DllImport(Lib)] public static extern IntPtr virConnectOpen(string uri);
        [DllImport(Lib)] public static extern int virConnectClose(IntPtr conn);
        [DllImport(Lib)] public static extern IntPtr virConnectGetHostname(IntPtr conn);
        [DllImport(Lib)] public static extern int virConnectListAllDomains(IntPtr conn, out IntPtr domains, uint flags);
        [DllImport(Lib)] public static extern IntPtr virDomainLookupByName(IntPtr conn, string name);
        [DllImport(Lib)] public static extern int virDomainFree(IntPtr dom);
        [DllImport(Lib)] public static extern IntPtr virDomainGetName(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainGetUUIDString(IntPtr dom, byte[] buf);
        [DllImport(Lib)] public static extern IntPtr virDomainGetXMLDesc(IntPtr dom, uint flags);
        [DllImport(Lib)] public static extern int virDomainGetState(IntPtr dom, out int state, out int reason, uint flags);
        [DllImport(Lib)] public static extern int virDomainBackupBegin(IntPtr dom, string backupXml, string? checkpointXml, uint flags);
        [DllImport(Lib)] public static extern int virDomainAbortJob(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainGetJobInfo(IntPtr dom, out JobInfo info);
        [DllImport(Lib)] public static extern int virDomainListAllCheckpoints(IntPtr dom, out IntPtr checkpoints, uint flags);
        [DllImport(Lib)] public static extern IntPtr virDomainCheckpointLookupByName(IntPtr dom, string name, uint flags);
        [DllImport(Lib)] public static extern IntPtr virDomainCheckpointGetName(IntPtr checkpoint);
        [DllImport(Lib)] public static extern int virDomainCheckpointDelete(IntPtr checkpoint, uint flags);
        [DllImport(Lib)] public static extern int virDomainCheckpointFree(IntPtr checkpoint);
        [DllImport(Lib)] public static extern int virDomainSuspend(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainResume(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainSaveFlags(IntPtr dom, string to, string? dxml, uint flags);
        [DllImport(Lib)] public static extern int virDomainRestoreFlags(IntPtr conn, string from, string? dxml, uint flags);
        [DllImport(Lib)] public static extern IntPtr virDomainSaveImageGetXMLDesc(IntPtr conn, string file, uint flags);
        [DllImport(Lib)] public static extern IntPtr virDomainDefineXML(IntPtr conn, string xml);
        [DllImport(Lib)] public static extern IntPtr virDomainCreateXML(IntPtr conn, string xml, uint flags);
        // virDomainCreateFlags: the domain dies with the connection that started it.
        public const uint StartAutoDestroy = 2;
        [DllImport(Lib)] public static extern int virDomainCreate(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainDestroy(IntPtr dom);
        [DllImport(Lib)] public static extern int virDomainUndefineFlags(IntPtr dom, uint flags);
        // Live external snapshots (memory checkpoints): virDomainSnapshotCreateFlags, virDomainBlockCommitFlags,
        // virDomainBlockJobAbortFlags, virDomainGetJobStatsFlags.
        public const uint SnapshotNoMetadata = 4, SnapshotAtomic = 128, SnapshotLive = 256;
        public const uint BlockCommitActive = 4;
        public const uint BlockJobAbortPivot = 2;
        public const uint JobStatsCompleted = 1;
        public const int TypedParamULLong = 4;
        [DllImport(Lib)] public static extern IntPtr virDomainSnapshotCreateXML(IntPtr dom, string xml, uint flags);
        [DllImport(Lib)] public static extern int virDomainSnapshotFree(IntPtr snapshot);
        [DllImport(Lib)] public static extern IntPtr virDomainCheckpointCreateXML(IntPtr dom, string xml, uint flags);
        [DllImport(Lib)] public static extern int virDomainBlockCommit(IntPtr dom, string disk, string? bas, string? top, ulong bandwidth, uint flags);
        [DllImport(Lib)] public static extern int virDomainBlockPull(IntPtr dom, string disk, ulong bandwidth, uint flags);
        [DllImport(Lib)] public static extern int virDomainGetBlockJobInfo(IntPtr dom, string disk, out BlockJobInfo info, uint flags);
        [DllImport(Lib)] public static extern int virDomainBlockJobAbort(IntPtr dom, string disk, uint flags);
        [DllImport(Lib)] public static extern int virDomainGetJobStats(IntPtr dom, out int type, out IntPtr parameters, out int count, uint flags);
        [DllImport(Lib)] public static extern void virTypedParamsFree(IntPtr parameters, int count);

        [StructLayout(LayoutKind.Sequential)]
        public struct BlockJobInfo
        {
            public int Type;
            public ulong Bandwidth, Cur, End;
        }

        [DllImport(Lib)] public static extern IntPtr virGetLastError();
        [DllImport(Lib)] public static extern void virResetLastError();
        [DllImport(Lib)] public static extern int virInitialize();

        [DllImport(Lib)] public static extern void virSetErrorFunc(IntPtr userData, IntPtr handler);
        [DllImport(Lib)] public static extern int virEventRegisterDefaultImpl();
        [DllImport(Lib)] public static extern int virEventRunDefaultImpl();
        [DllImport(Lib)] public static extern int virConnectDomainEventRegisterAny(IntPtr conn, IntPtr dom, int eventId, IntPtr callback, IntPtr opaque, IntPtr freeCallback);
        [DllImport(Lib)] public static extern int virConnectDomainEventDeregisterAny(IntPtr conn, int callbackId);
        public const int EventIdLifecycle = 0;

        // The guest agent pass-through lives in libvirt's QEMU-specific library (shipped beside libvirt.so.0); its
        // errors land in the same thread-local last error. The reply is a char* for Free. timeout is in seconds.
        private const string QemuLib = "libvirt-qemu.so.0";
        [DllImport(QemuLib)] public static extern IntPtr virDomainQemuAgentCommand(IntPtr dom, string cmd, int timeout, uint flags);

        [DllImport("libc", EntryPoint = "free")] public static extern void Free(IntPtr p);

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate void ErrorHandler(IntPtr userData, IntPtr error);

        // libvirt prints every error to stderr unless a handler is set; errors reach callers as LibvirtException.
        private static readonly ErrorHandler Quiet = (u, e) => { };
        private static int _quieted;

        public static void QuietErrors()
        {
            if (System.Threading.Interlocked.Exchange(ref _quieted, 1) == 0)
                virSetErrorFunc(IntPtr.Zero, Marshal.GetFunctionPointerForDelegate(Quiet));
        }

        [StructLayout(LayoutKind.Sequential)]
        public struct JobInfo
        {
            public int Type;
            public ulong TimeElapsed, TimeRemaining, DataTotal, DataProcessed, DataRemaining, MemTotal, MemProcessed, MemRemaining, FileTotal, FileProcessed, FileRemaining;
        }

        /// <summary>Takes ownership of a char* that libvirt allocated, returning it as a string.</summary>
        public static string? TakeString(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            try { return PtrToUtf8(p); }
            finally { Free(p); }
        }

        public static string? PtrToUtf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return System.Text.Encoding.UTF8.GetString(bytes);
        }

        /// <summary>libvirt's last error on this thread: its numeric code and message.</summary>
        public static LibvirtException LastError(string what)
        {
            IntPtr e = virGetLastError();
            if (e == IntPtr.Zero) return new LibvirtException(what + ": libvirt reported no error detail.", 0, 0);
            int code = Marshal.ReadInt32(e, 0);
            int domain = Marshal.ReadInt32(e, 4);
            string message = PtrToUtf8(Marshal.ReadIntPtr(e, 8)) ?? "unknown error";
            return new LibvirtException($"{what}: {message}", code, domain);
        }
    }

    /// <summary>An error libvirt reported, with libvirt's own code (virErrorNumber) and message.</summary>
    public sealed class LibvirtException : HypervisorException
    {
        public LibvirtException(string message, int code, int domain) : base(message)
        {
            Code = code;
            ErrorDomain = domain;
        }

        /// <summary>virErrorNumber, e.g. 42 VIR_ERR_NO_DOMAIN, 109 VIR_ERR_CHECKPOINT_INCONSISTENT.</summary>
        public int Code { get; }
        public int ErrorDomain { get; }
    }
}
