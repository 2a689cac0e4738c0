using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>Where syslog lines go: a unix datagram socket (/dev/log: journald or the syslog daemon) or UDP.</summary>
    public sealed class SyslogTarget
    {
        public const string LocalSocket = "/dev/log";
        public const int DefaultUdpPort = 514;

        private SyslogTarget(string? socketPath, string? host, int port)
        {
            SocketPath = socketPath;
            Host = host;
            Port = port;
        }

        /// <summary>The local log socket, where journald (or rsyslog, syslog-ng) listens on Linux.</summary>
        public static SyslogTarget Local { get; } = new SyslogTarget(LocalSocket, null, 0);

        /// <summary>The unix socket's path; null for UDP.</summary>
        public string? SocketPath { get; }
        public string? Host { get; }
        public int Port { get; }
        public bool IsUdp => SocketPath is null;

        /// <summary>"udp://HOST[:PORT]", "HOST:PORT" or "[IPv6]:PORT" for UDP (port 514 by default); an absolute path for a unix socket.</summary>
        public static SyslogTarget Parse(string text)
        {
            text = text.Trim();
            if (text.StartsWith("/", StringComparison.Ordinal)) return new SyslogTarget(text, null, 0);
            string withScheme = text.IndexOf("://", StringComparison.Ordinal) >= 0 ? text : "udp://" + text;
            if (Uri.TryCreate(withScheme, UriKind.Absolute, out var uri) && uri.Scheme == "udp" && uri.Host.Length > 0
                && (uri.AbsolutePath == "/" || uri.AbsolutePath.Length == 0) && (text.StartsWith("udp://", StringComparison.OrdinalIgnoreCase) || !uri.IsDefaultPort))
            {
                return new SyslogTarget(null, uri.Host.Trim('[', ']'), uri.IsDefaultPort ? DefaultUdpPort : uri.Port);
            }
            throw new ArgumentException($"-SyslogServer '{text}' is neither udp://HOST[:PORT], HOST:PORT nor the path of a unix socket.");
        }

        public override string ToString() => IsUdp ? $"udp://{(Host!.IndexOf(':') >= 0 ? "[" + Host + "]" : Host)}:{Port}" : SocketPath!;
    }

    /// <summary>
    /// A notice as one syslog line, facility daemon: over a unix socket in the form the C library's syslog() sends
    /// (journald and rsyslog parse it; the host is the socket's own), over UDP as RFC 5424 with the host name and a
    /// full timestamp. Errors are err, a restore is warning, the rest info.
    /// </summary>
    internal sealed class SyslogChannel : INotificationChannel
    {
        public const string AppName = "vmcheckpoint";
        private const int FacilityDaemon = 3;
        /// <summary>Receivers must take 2048 bytes (RFC 5424 6.1); longer lines may be cut or dropped on the way.</summary>
        private const int MaxMessageBytes = 2048;

        private readonly SyslogTarget _target;

        public SyslogChannel(SyslogTarget target)
        {
            _target = target;
        }

        public string Name => "syslog";
        public string Target => _target.ToString();

        internal static int Severity(NoticeKind kind) => kind switch
        {
            NoticeKind.Failure => 3, // err
            NoticeKind.GaveUp => 3,
            NoticeKind.Restored => 4, // warning
            NoticeKind.Test => 5, // notice
            _ => 6, // info
        };

        internal static int Priority(NoticeKind kind) => FacilityDaemon * 8 + Severity(kind);

        /// <summary>"&lt;PRI&gt;Mmm dd hh:mm:ss vmcheckpoint[PID]: MESSAGE", as glibc's syslog() writes to /dev/log.</summary>
        internal static string LocalLine(Notice notice, int processId)
        {
            var local = notice.Time.ToLocalTime();
            string stamp = local.ToString("MMM", CultureInfo.InvariantCulture) + " " + local.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2) + " "
                + local.ToString("HH:mm:ss", CultureInfo.InvariantCulture);
            return Fit($"<{Priority(notice.Kind)}>{stamp} {AppName}[{processId}]: ", notice.OneLine);
        }

        /// <summary>RFC 5424: "&lt;PRI&gt;1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MESSAGE"; MSGID is the notice's kind.</summary>
        internal static string Rfc5424Line(Notice notice, int processId)
        {
            string stamp = notice.Time.ToUniversalTime().ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
            return Fit($"<{Priority(notice.Kind)}>1 {stamp} {HeaderField(notice.Host, 255)} {AppName} {processId} {notice.Kind} - ", notice.OneLine);
        }

        /// <summary>A header field: printable ASCII without spaces, or "-" (the nil value) when nothing is left.</summary>
        private static string HeaderField(string value, int max)
        {
            var b = new StringBuilder();
            foreach (char c in value)
                if (c > 32 && c < 127 && b.Length < max) b.Append(c);
            return b.Length == 0 ? "-" : b.ToString();
        }

        private static string Fit(string header, string message)
        {
            int room = MaxMessageBytes - Encoding.UTF8.GetByteCount(header);
            if (Encoding.UTF8.GetByteCount(message) <= room) return header + message;
            int length = Math.Min(message.Length, room);
            while (length > 0 && Encoding.UTF8.GetByteCount(message.Substring(0, length)) > room - 3) length--;
            if (length > 0 && char.IsHighSurrogate(message[length - 1])) length--;
            return header + message.Substring(0, length) + "...";
        }

        public void Send(Notice notice, CancellationToken cancellationToken)
        {
            using var me = Process.GetCurrentProcess();
            if (_target.IsUdp)
            {
                var bytes = Encoding.UTF8.GetBytes(Rfc5424Line(notice, me.Id));
                using var udp = new UdpClient(Family(_target.Host!));
                udp.Send(bytes, bytes.Length, _target.Host, _target.Port);
                return;
            }
            SendToSocket(_target.SocketPath!, Encoding.UTF8.GetBytes(LocalLine(notice, me.Id)));
        }

        private static AddressFamily Family(string host) =>
            IPAddress.TryParse(host, out var address) ? address.AddressFamily : AddressFamily.InterNetwork;

        private static void SendToSocket(string path, byte[] line)
        {
            if (!File.Exists(path))
                throw new IOException($"{path} does not exist: neither journald nor a syslog daemon listens on this machine (or give -SyslogServer).");
            var endPoint = UnixEndPoint(path);
            try
            {
                using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
                socket.SendTo(line, endPoint);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ProtocolType)
            {
                // A daemon that listens on a stream socket (as some syslog-ng set-ups do): one line, ended by a NUL as glibc does.
                using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Connect(endPoint);
                var framed = new byte[line.Length + 1];
                Buffer.BlockCopy(line, 0, framed, 0, line.Length);
                socket.Send(framed);
            }
        }

        private static EndPoint UnixEndPoint(string path)
        {
#if NET
            return new UnixDomainSocketEndPoint(path);
#else
            // netstandard2.0 has no UnixDomainSocketEndPoint; .NET Core 2.1 and later (PowerShell 7) carry it. The .NET
            // Framework (Windows PowerShell 5.1) does not: there syslog goes to the Event Log or over UDP.
            var type = Type.GetType("System.Net.Sockets.UnixDomainSocketEndPoint, System.Net.Sockets")
                ?? throw new PlatformNotSupportedException($"This .NET cannot send to a unix socket ({path}): give -SyslogServer udp://HOST:PORT.");
            return (EndPoint)Activator.CreateInstance(type, path)!;
#endif
        }
    }
}
