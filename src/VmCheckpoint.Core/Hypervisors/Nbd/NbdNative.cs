using System;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Hypervisors.Nbd
{
    /// <summary>
    /// The libnbd C API (libnbd.so.0), only the calls VmCheckpoint makes. Strings go in as UTF-8: that is how .NET
    /// marshals LPStr on Linux, the only platform with libnbd.so.0 (netstandard2.0 lacks LPUTF8Str).
    /// </summary>
    /// <remarks>
    /// Every call returns -1 (or NULL) on failure; the reason is in <see cref="nbd_get_error"/> and
    /// <see cref="nbd_get_errno"/>, which are thread-local, so read them right after the failing call.
    /// </remarks>
    internal static unsafe class NbdNative
    {
        private const string Lib = "libnbd.so.0";

        // Flags of the "base:allocation" meta context. A hole that reads as zero is HOLE|ZERO.
        public const uint StateHole = 1, StateZero = 2;
        // Flag of a "qemu:dirty-bitmap:…" meta context.
        public const uint StateDirty = 1;

        public const string MetaBaseAllocation = "base:allocation";

        /// <summary>
        /// The callback of nbd_extent_callback. <paramref name="entries"/> holds <paramref name="nrEntries"/> uint32s,
        /// two per extent (length, flags), starting at <paramref name="offset"/>. Must not throw and must not call
        /// libnbd on the same handle (it holds the handle's lock). Return -1 with *error set to fail the command.
        /// </summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        public delegate int ExtentFunction(IntPtr userData, IntPtr metaContext, ulong offset, uint* entries, UIntPtr nrEntries, int* error);

        /// <summary>nbd_extent_callback, which libnbd takes by value (24 bytes on x86_64).</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct ExtentCallback
        {
            public IntPtr Callback;
            public IntPtr UserData;
            public IntPtr Free;
        }

        [DllImport(Lib)] public static extern NbdHandle nbd_create();
        [DllImport(Lib)] public static extern void nbd_close(IntPtr h);
        [DllImport(Lib)] public static extern int nbd_set_export_name(NbdHandle h, string exportName);
        [DllImport(Lib)] public static extern int nbd_add_meta_context(NbdHandle h, string name);
        [DllImport(Lib)] public static extern int nbd_connect_unix(NbdHandle h, string unixSocket);
        [DllImport(Lib)] public static extern int nbd_connect_uri(NbdHandle h, string uri);
        [DllImport(Lib)] public static extern long nbd_get_size(NbdHandle h);
        [DllImport(Lib)] public static extern int nbd_can_meta_context(NbdHandle h, string metaContext);
        [DllImport(Lib)] public static extern int nbd_pread(NbdHandle h, byte* buf, UIntPtr count, ulong offset, uint flags);
        [DllImport(Lib)] public static extern int nbd_block_status(NbdHandle h, ulong count, ulong offset, ExtentCallback extentCallback, uint flags);
        [DllImport(Lib)] public static extern int nbd_shutdown(NbdHandle h, uint flags);
        [DllImport(Lib)] public static extern IntPtr nbd_get_error();
        [DllImport(Lib)] public static extern int nbd_get_errno();

        /// <summary>libnbd's last error on this thread, as an exception saying what was being done.</summary>
        public static NbdException LastError(string what)
        {
            string message = PtrToUtf8(nbd_get_error()) ?? "libnbd reported no error detail";
            return new NbdException($"{what}: {message}", nbd_get_errno());
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
    }

    /// <summary>A struct nbd_handle*, closed (nbd_close) when released, even if its owner was never disposed.</summary>
    internal sealed class NbdHandle : SafeHandle
    {
        public NbdHandle() : base(IntPtr.Zero, ownsHandle: true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle()
        {
            NbdNative.nbd_close(handle);
            return true;
        }
    }
}
