using System.Net;
using System.Net.Sockets;
using System.Text;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Notifications;

/// <summary>
/// The notifier and its channels on real sockets of this machine: a UDP syslog receiver, a unix datagram socket as
/// /dev/log is, an HTTP listener, and an SMTP port nobody answers on. (The Pester tests send to real rsyslog and SMTP servers.)
/// </summary>
public sealed class NotifierTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly RecordingReporter _reporter = new();

    public void Dispose() => _temp.Dispose();

    private static Notice Failure() => new()
    {
        Kind = NoticeKind.Failure, SourceKind = "schedule", Source = "nightly", Subject = "VmCheckpoint: schedule 'nightly' failed",
        What = "The scheduled checkpoint of web01 failed.", Why = "web01: gone.", NextStep = "Look.",
    };

    [Fact]
    public void AFailingChannelStopsNeitherTheOthersNorTheCaller()
    {
        var broken = new RecordingChannel("broken", new IOException("the server is down"));
        var working = new RecordingChannel("working");
        var notifier = new Notifier(new FixedSettings(new NotificationSettings { Syslog = true }), _reporter, _ => new[] { broken, working });

        var results = notifier.Send(Failure());

        Assert.Single(working.Sent);
        Assert.Equal(new[] { false, true }, results.Select(r => r.Succeeded));
        var warning = Assert.Single(_reporter.Warnings);
        Assert.Contains("broken", warning);
        Assert.Contains("the server is down", warning);
    }

    [Fact]
    public void OnFailureASuccessIsNotSentAndNoSettingsSendNothing()
    {
        var channel = new RecordingChannel("c");
        var success = Failure();
        success.Kind = NoticeKind.Success;
        Assert.Empty(new Notifier(new FixedSettings(new NotificationSettings { Syslog = true }), _reporter, _ => new[] { channel }).Send(success));
        Assert.Empty(new Notifier(new FixedSettings(null), _reporter, _ => new[] { channel }).Send(Failure()));
        Assert.Single(new Notifier(new FixedSettings(new NotificationSettings { Syslog = true, On = NotifyOn.Always }), _reporter, _ => new[] { channel }).Send(success));
        Assert.Single(channel.Sent);
    }

    [Fact]
    public void DamagedSettingsAreAWarningNotAnError()
    {
        var store = new NotificationStore(_temp.Path);
        Directory.CreateDirectory(store.Folder);
        File.WriteAllText(store.Path, "[1, 2");
        Assert.Empty(new Notifier(store, _reporter).Send(Failure()));
        Assert.Contains(store.Path, Assert.Single(_reporter.Warnings));
    }

    [Fact]
    public void SyslogOverUdpIsOneRfc5424Line()
    {
        using var listener = new UdpSyslogListener();
        var settings = new NotificationSettings { Syslog = true, SyslogServer = "udp://" + listener.Server };
        var result = Assert.Single(new Notifier(new FixedSettings(settings), _reporter).Send(Failure()));

        Assert.True(result.Succeeded, result.Error);
        string? line = listener.Receive();
        Assert.NotNull(line);
        Assert.StartsWith("<27>1 ", line);
        Assert.Contains(" vmcheckpoint ", line);
        Assert.Contains("schedule 'nightly' failed. What: The scheduled checkpoint of web01 failed. Why: web01: gone. Next step: Look.", line);
    }

    [Fact]
    public void SyslogOverAUnixSocketIsTheLocalForm()
    {
        string path = _temp.File("log.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        var settings = new NotificationSettings { Syslog = true, SyslogServer = path };
        Assert.True(Assert.Single(new Notifier(new FixedSettings(settings), _reporter).Send(Failure())).Succeeded);

        var buffer = new byte[4096];
        server.ReceiveTimeout = 5000;
        int n = server.Receive(buffer);
        string line = Encoding.UTF8.GetString(buffer, 0, n);
        Assert.Matches(@"^<27>\w{3} [ \d]\d \d\d:\d\d:\d\d vmcheckpoint\[\d+\]: VmCheckpoint: schedule 'nightly' failed", line);
    }

    [Fact]
    public void NoSyslogSocketIsAFailureThatSaysSo()
    {
        var settings = new NotificationSettings { Syslog = true, SyslogServer = _temp.File("nobody-listens.sock") };
        var result = Assert.Single(new Notifier(new FixedSettings(settings), _reporter).Send(Failure()));
        Assert.False(result.Succeeded);
        Assert.Contains("does not exist", result.Error);
    }

    [Fact]
    public async Task TheWebhookGetsTheNoticeAsJson()
    {
        int port = FreeTcpPort();
        using var http = new HttpListener();
        http.Prefixes.Add($"http://127.0.0.1:{port}/hook/");
        http.Start();
        var received = Task.Run(() =>
        {
            var context = http.GetContext();
            using var reader = new StreamReader(context.Request.InputStream, Encoding.UTF8);
            var body = (context.Request.HttpMethod, context.Request.ContentType, reader.ReadToEnd());
            context.Response.StatusCode = 204;
            context.Response.Close();
            return body;
        });
        var settings = new NotificationSettings { WebhookUri = $"http://127.0.0.1:{port}/hook/" };
        var result = Assert.Single(new Notifier(new FixedSettings(settings), _reporter).Send(Failure()));

        Assert.True(result.Succeeded, result.Error);
        var (method, type, body) = await received.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal("POST", method);
        Assert.StartsWith("application/json", type);
        Assert.Contains("\"source\":\"nightly\"", body.Replace(" ", ""));
    }

    [Fact]
    public void AWebhookThatRefusesIsAFailureWithItsStatus()
    {
        int port = FreeTcpPort();
        using var http = new HttpListener();
        http.Prefixes.Add($"http://127.0.0.1:{port}/");
        http.Start();
        _ = Task.Run(() =>
        {
            var context = http.GetContext();
            context.Response.StatusCode = 403;
            context.Response.Close();
        });
        var result = Assert.Single(new Notifier(new FixedSettings(new NotificationSettings { WebhookUri = $"http://127.0.0.1:{port}/" }), _reporter).Send(Failure()));
        Assert.False(result.Succeeded);
        Assert.Contains("403", result.Error);
    }

    [Fact]
    public void AMailServerThatIsNotThereFailsAloneAndQuickly()
    {
        using var listener = new UdpSyslogListener();
        var settings = new NotificationSettings
        {
            SmtpServer = "127.0.0.1", Port = FreeTcpPort(), From = "backup@example.com", To = new List<string> { "ops@example.com" },
            Syslog = true, SyslogServer = listener.Server,
        };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var results = new Notifier(new FixedSettings(settings), _reporter).Send(Failure());

        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { "syslog", "mail" }, results.Select(r => r.Channel));
        Assert.True(results[0].Succeeded);
        Assert.False(results[1].Succeeded);
        Assert.NotNull(listener.Receive());
        Assert.Contains("mail", Assert.Single(_reporter.Warnings));
    }

    private static int FreeTcpPort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        int port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}
