using System.Net;
using System.Net.Sockets;
using System.Text;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Tests.Notifications;

/// <summary>Settings handed in directly, as a run's caller or a test would.</summary>
internal sealed class FixedSettings : INotificationSettingsSource
{
    private readonly NotificationSettings? _settings;
    public FixedSettings(NotificationSettings? settings) { _settings = settings; }
    public NotificationSettings? Load() => _settings;
}

/// <summary>A real syslog receiver's socket: UDP on 127.0.0.1, on a port of its own, datagrams as text.</summary>
internal sealed class UdpSyslogListener : IDisposable
{
    private readonly UdpClient _udp = new(new IPEndPoint(IPAddress.Loopback, 0));

    public int Port => ((IPEndPoint)_udp.Client.LocalEndPoint!).Port;
    public string Server => $"127.0.0.1:{Port}";

    /// <summary>The next line, or null when none comes within the time.</summary>
    public string? Receive(int milliseconds = 5000)
    {
        // A blocking receive: an asynchronous one completes on the thread pool, which parallel tests can starve.
        _udp.Client.ReceiveTimeout = milliseconds;
        try
        {
            var from = new IPEndPoint(IPAddress.Any, 0);
            return Encoding.UTF8.GetString(_udp.Receive(ref from));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut || e.SocketErrorCode == SocketError.WouldBlock)
        {
            return null;
        }
    }

    /// <summary>Every line that comes within the time.</summary>
    public List<string> ReceiveAll(int milliseconds = 1000)
    {
        var lines = new List<string>();
        while (Receive(lines.Count == 0 ? milliseconds : 300) is { } line) lines.Add(line);
        return lines;
    }

    public void Dispose() => _udp.Dispose();
}

/// <summary>A channel that records what it was given, or fails as told.</summary>
internal sealed class RecordingChannel : INotificationChannel
{
    public RecordingChannel(string name, Exception? fail = null)
    {
        Name = name;
        Fail = fail;
    }

    public string Name { get; }
    public string Target => "test:" + Name;
    public Exception? Fail { get; }
    public List<Notice> Sent { get; } = new();

    public void Send(Notice notice, CancellationToken cancellationToken)
    {
        if (Fail != null) throw Fail;
        Sent.Add(notice);
    }
}

internal sealed class RecordingReporter : IJobReporter
{
    public List<string> Warnings { get; } = new();
    public List<string> Verbose { get; } = new();
    public void Progress(string activity, string status, int percent) { }
    void IJobReporter.Verbose(string message) { lock (Verbose) Verbose.Add(message); }
    public void Warning(string message) { lock (Warnings) Warnings.Add(message); }
}
