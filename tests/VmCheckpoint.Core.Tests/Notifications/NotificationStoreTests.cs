using System.Runtime.InteropServices;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Scheduling;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Notifications;

/// <summary>The machine-wide settings file: what goes in comes out, written whole, readable by its owner alone.</summary>
public sealed class NotificationStoreTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly NotificationStore _store;

    public NotificationStoreTests()
    {
        _store = new NotificationStore(_temp.Path);
    }

    public void Dispose() => _temp.Dispose();

    private static NotificationSettings Mail(string? password = "s3cret") => new()
    {
        On = NotifyOn.Always,
        SmtpServer = "smtp.example.com",
        Port = 587,
        UseSsl = true,
        From = "VmCheckpoint <backup@example.com>",
        To = new List<string> { "ops@example.com", "oncall@example.com" },
        UserName = password is null ? null : "backup",
        Password = password,
        Syslog = true,
        SyslogServer = "udp://logs.example.com:1514",
        WebhookUri = "https://chat.example.com/hooks/abc?x=1",
    };

    [Fact]
    public void LivesBesideTheSchedulesUnderTheSameRoot()
    {
        Assert.Equal(ScheduleStore.RootVariable, NotificationStore.RootVariable);
        var schedules = new ScheduleStore(_temp.Path);
        Assert.Equal(Path.GetDirectoryName(schedules.Folder), _store.Folder);
        Assert.Equal(Path.Combine(_temp.Path, "etc", "vmcheckpoint", "notifications.json"), _store.Path);
    }

    [Fact]
    public void NothingSetIsNull()
    {
        Assert.Null(_store.Load());
        Assert.False(_store.Remove());
    }

    [Fact]
    public void WhatIsSavedLoadsBackWhole()
    {
        var saved = Mail();
        _store.Save(saved);
        var loaded = _store.Load()!;

        Assert.Equal(NotifyOn.Always, loaded.On);
        Assert.Equal("smtp.example.com", loaded.SmtpServer);
        Assert.Equal(587, loaded.Port);
        Assert.True(loaded.UseSsl);
        Assert.Equal(saved.From, loaded.From);
        Assert.Equal(saved.To, loaded.To);
        Assert.Equal("backup", loaded.UserName);
        Assert.Equal("s3cret", loaded.Password);
        Assert.True(loaded.Syslog);
        Assert.Equal("udp://logs.example.com:1514", loaded.SyslogServer);
        Assert.Equal(saved.WebhookUri, loaded.WebhookUri);
    }

    [Fact]
    public void APasswordIsStoredOnlyWhenGiven()
    {
        _store.Save(Mail(password: null));
        string text = File.ReadAllText(_store.Path);
        Assert.DoesNotContain("Password", text);
        Assert.False(_store.Load()!.HasPassword);
        Assert.Equal(25, new NotificationSettings().EffectivePort);
    }

    [Fact]
    public void TheFileIsTheOwnersAloneFromTheStart()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return;
        _store.Save(Mail());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_store.Path));
        // Replaced by a second save: the new file is private too, whatever mode the old one had.
        File.SetUnixFileMode(_store.Path, (UnixFileMode)Convert.ToInt32("644", 8));
        _store.Save(Mail("other"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_store.Path));
        Assert.Equal("other", _store.Load()!.Password);
    }

    [Fact]
    public void SavingLeavesNoTemporaryFileAndARefusedSaveKeepsTheOldSettings()
    {
        _store.Save(Mail());
        var broken = Mail();
        broken.To.Clear();
        var e = Assert.Throws<ArgumentException>(() => _store.Save(broken));
        Assert.Contains("-To", e.Message);
        Assert.Equal(2, _store.Load()!.To.Count);
        Assert.Equal(new[] { "notifications.json" }, Directory.GetFiles(_store.Folder).Select(Path.GetFileName));
    }

    [Fact]
    public async Task AReaderNeverSeesHalfAFile()
    {
        // Saves of two different sizes over each other while another thread reads: every read parses whole.
        var small = new NotificationSettings { Syslog = true };
        var large = Mail();
        large.To = Enumerable.Range(0, 200).Select(i => $"user{i}@example.com").ToList();
        _store.Save(small);
        int reads = 0;
        using var stop = new CancellationTokenSource();
        using var reading = new ManualResetEventSlim(false);
        var reader = Task.Factory.StartNew(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var s = _store.Load();
                Assert.NotNull(s);
                Assert.True(s!.To.Count == 0 || s.To.Count == 200);
                Interlocked.Increment(ref reads);
                reading.Set();
            }
        }, TaskCreationOptions.LongRunning);
        Assert.True(reading.Wait(TimeSpan.FromSeconds(30)), "the reader never started");
        // At least 200 saves, and on until the reader has read a few times while they happened (a busy machine may starve it).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        int startReads = Volatile.Read(ref reads);
        for (int i = 0; i < 200 || (Volatile.Read(ref reads) - startReads < 20 && DateTime.UtcNow < deadline); i++) _store.Save(i % 2 == 0 ? large : small);
        stop.Cancel();
        await reader;
        Assert.True(Volatile.Read(ref reads) - startReads >= 20, $"only {reads - startReads} reads during the saves");
    }

    [Fact]
    public void ADamagedFileIsInvalidDataNamingIt()
    {
        Directory.CreateDirectory(_store.Folder);
        File.WriteAllText(_store.Path, "{ not json");
        var e = Assert.Throws<InvalidDataException>(() => _store.Load());
        Assert.Contains(_store.Path, e.Message);
        Assert.True(_store.Remove());
        Assert.Null(_store.Load());
    }

    [Theory]
    [InlineData("From", "sender")]
    [InlineData("To", "recipients")]
    [InlineData("BadTo", "not a mail address")]
    [InlineData("Webhook", "-WebhookUri")]
    [InlineData("Syslog", "-SyslogServer")]
    [InlineData("PasswordAlone", "user name")]
    public void SettingsThatCouldNeverDeliverAreRefused(string what, string message)
    {
        var s = Mail();
        switch (what)
        {
            case "From": s.From = null; break;
            case "To": s.To.Clear(); break;
            case "BadTo": s.To = new List<string> { "not an address" }; break;
            case "Webhook": s.WebhookUri = "ftp://example.com/x"; break;
            case "Syslog": s.SyslogServer = "logs.example.com"; break;
            case "PasswordAlone": s.UserName = null; break;
        }
        var e = Assert.Throws<ArgumentException>(() => s.Validate());
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("/dev/log", "/dev/log", null, 0)]
    [InlineData("udp://logs.example.com", null, "logs.example.com", 514)]
    [InlineData("udp://127.0.0.1:1514", null, "127.0.0.1", 1514)]
    [InlineData("127.0.0.1:5514", null, "127.0.0.1", 5514)]
    [InlineData("[::1]:5514", null, "::1", 5514)]
    public void SyslogServersAreAUnixSocketOrUdp(string text, string? socket, string? host, int port)
    {
        var t = SyslogTarget.Parse(text);
        Assert.Equal(socket, t.SocketPath);
        Assert.Equal(host, t.Host);
        Assert.Equal(port, t.Port);
    }

    [Fact]
    public void OnFailureSendsEverythingButSuccess()
    {
        var s = new NotificationSettings();
        Assert.True(s.Wants(NoticeKind.Failure));
        Assert.True(s.Wants(NoticeKind.Restored));
        Assert.True(s.Wants(NoticeKind.GaveUp));
        Assert.False(s.Wants(NoticeKind.Success));
        s.On = NotifyOn.Always;
        Assert.True(s.Wants(NoticeKind.Success));
    }
}
