#if NET
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Net.Sockets;
using System.Threading;

namespace VmCheckpoint.Core.Exports
{
    /// <summary>
    /// An NBD server on a unix socket: each client on a thread of its own (qemu, nbdfuse and qemu-img may read at the
    /// same time). It stops when told to, or when no client has been connected for <see cref="IdleExit"/>; when it stops,
    /// every connection is closed, so a client sees an error rather than data from nowhere.
    /// </summary>
    public sealed class NbdServer
    {
        private readonly string _socketPath;
        private readonly IReadOnlyList<IExportedDisk> _exports;
        private readonly Action<string> _log;
        private readonly object _gate = new object();
        private readonly List<Socket> _clients = new List<Socket>();
        private readonly Stopwatch _idle = Stopwatch.StartNew();
        private long _served;

        public NbdServer(string socketPath, IReadOnlyList<IExportedDisk> exports, Action<string>? log = null)
        {
            _socketPath = socketPath;
            _exports = exports;
            _log = log ?? (_ => { });
        }

        /// <summary>How long the server waits without a client before it stops by itself; null: until stopped.</summary>
        public TimeSpan? IdleExit { get; set; }

        /// <summary>Called once the socket accepts connections.</summary>
        public Action? Listening { get; set; }

        public int Connections { get { lock (_gate) return _clients.Count; } }

        /// <summary>Connections served so far.</summary>
        public long Served => Interlocked.Read(ref _served);

        public void Run(CancellationToken cancellationToken)
        {
            if (File.Exists(_socketPath)) File.Delete(_socketPath);
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(_socketPath));
            listener.Listen(16);
            Listening?.Invoke();
            var threads = new List<Thread>();
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    if (!listener.Poll(200_000, SelectMode.SelectRead))
                    {
                        if (IdleExit is { } idle && Connections == 0 && _idle.Elapsed >= idle)
                        {
                            _log($"no client for {idle.TotalSeconds:0} s: stopping");
                            return;
                        }
                        continue;
                    }
                    var client = listener.Accept();
                    lock (_gate) _clients.Add(client);
                    Interlocked.Increment(ref _served);
                    var thread = new Thread(() => Serve(client, cancellationToken)) { IsBackground = true, Name = "NBD client" };
                    threads.Add(thread);
                    thread.Start();
                }
            }
            finally
            {
                lock (_gate)
                {
                    foreach (var c in _clients) { try { c.Shutdown(SocketShutdown.Both); } catch (SocketException) { } c.Dispose(); }
                }
                foreach (var t in threads) t.Join(TimeSpan.FromSeconds(5));
                try { File.Delete(_socketPath); } catch (IOException) { }
            }
        }

        private void Serve(Socket client, CancellationToken cancellationToken)
        {
            try
            {
                // Two buffers, one per direction: a BufferedStream that both reads and writes seeks back over what it
                // read ahead, which a socket cannot do, and clients send their next requests before the replies come.
                using var stream = new NetworkStream(client, ownsSocket: false);
                using var input = new BufferedStream(stream, 64 << 10);
                using var output = new BufferedStream(stream, 256 << 10);
                new NbdConnection(input, output, _exports, _log).Serve(cancellationToken);
            }
            catch (Exception e) when (e is IOException || e is SocketException || e is ObjectDisposedException)
            {
                if (!cancellationToken.IsCancellationRequested) _log($"client ended: {e.Message}");
            }
            catch (Exception e)
            {
                _log($"client failed: {e}");
            }
            finally
            {
                lock (_gate)
                {
                    _clients.Remove(client);
                    if (_clients.Count == 0) _idle.Restart();
                }
                client.Dispose();
            }
        }
    }
}
#endif
