using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>
    /// libvirt's domain lifecycle events (started, stopped, crashed, suspended on an I/O error...). libvirt delivers
    /// them from its default event loop, which a background thread of this process runs once started; events come
    /// only to connections opened after that, so a subscription opens a connection of its own.
    /// </summary>
    internal sealed class LibvirtEvents : IDisposable
    {
        private static readonly object LoopGate = new object();
        private static Thread? _loop;

        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        private delegate int LifecycleCallback(IntPtr conn, IntPtr dom, int eventType, int detail, IntPtr opaque);

        private readonly LibvirtConnection _connection;
        private readonly LifecycleCallback _callback;
        private readonly Action<string> _changed;
        private int _callbackId = -1;

        private LibvirtEvents(LibvirtConnection connection, Action<string> changed)
        {
            _connection = connection;
            _changed = changed;
            _callback = OnLifecycle;
        }

        /// <summary>Calls <paramref name="changed"/> with the domain's name on every lifecycle event of the host.</summary>
        public static LibvirtEvents Subscribe(string? uri, Action<string> changed)
        {
            EnsureLoop();
            var connection = LibvirtConnection.Open(uri);
            var events = new LibvirtEvents(connection, changed);
            events._callbackId = LibvirtNative.virConnectDomainEventRegisterAny(connection.Handle, IntPtr.Zero, LibvirtNative.EventIdLifecycle,
                Marshal.GetFunctionPointerForDelegate(events._callback), IntPtr.Zero, IntPtr.Zero);
            if (events._callbackId < 0)
            {
                connection.Dispose();
                throw LibvirtNative.LastError("Subscribing to lifecycle events");
            }
            return events;
        }

        private static void EnsureLoop()
        {
            lock (LoopGate)
            {
                if (_loop != null) return;
                LibvirtNative.QuietErrors();
                if (LibvirtNative.virEventRegisterDefaultImpl() < 0) throw LibvirtNative.LastError("Starting libvirt's event loop");
                _loop = new Thread(() => { while (LibvirtNative.virEventRunDefaultImpl() >= 0) { } }) { IsBackground = true, Name = "libvirt events" };
                _loop.Start();
            }
        }

        private int OnLifecycle(IntPtr conn, IntPtr dom, int eventType, int detail, IntPtr opaque)
        {
            // Runs on libvirt's loop thread: never let an exception reach native code.
            try { _changed(LibvirtNative.PtrToUtf8(LibvirtNative.virDomainGetName(dom)) ?? ""); }
            catch (Exception) { }
            return 0;
        }

        /// <summary>How long a stop waits for libvirt to close the connection before leaving it to the process's end.</summary>
        internal static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);

        public void Dispose()
        {
            // Closing a remote connection is a round trip to libvirtd, whose reply the event loop thread may be the one
            // to read: a stop (Ctrl+C of Watch-VmHealth) must not hang on it, so the close gets a bounded wait.
            int id = _callbackId;
            _callbackId = -1;
            var closed = new ManualResetEventSlim(false);
            ThreadPool.QueueUserWorkItem(_ =>
            {
                try
                {
                    if (id >= 0) LibvirtNative.virConnectDomainEventDeregisterAny(_connection.Handle, id);
                    _connection.Dispose();
                }
                finally
                {
                    GC.KeepAlive(_callback);
                    closed.Set();
                }
            });
            if (closed.Wait(CloseWait)) closed.Dispose();
        }
    }
}
