using System.Text.Json;
using System.Text.RegularExpressions;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Notifications;

/// <summary>What a notice says: the schedule or VM, what failed, why, the next step; and how each channel renders it.</summary>
public sealed class NoticeTests
{
    private static ScheduledRunReport Report(params string[] vms) => new("nightly", vms, "/mnt/backup/repo");

    [Fact]
    public void AnUnreachableRepositoryNamesTheScheduleTheVmsTheReasonAndWhatToCheck()
    {
        var error = new RepositoryNotFoundException("The repository folder /mnt/backup/repo does not exist or cannot be reached.", unreachable: true);
        var n = Report("web01", "db*").Failure(error);

        Assert.Equal(NoticeKind.Failure, n.Kind);
        Assert.Equal("nightly", n.Source);
        Assert.Contains("schedule 'nightly' failed", n.Subject);
        Assert.Contains("web01, db*", n.What);
        Assert.Contains("no VM was checkpointed", n.What);
        Assert.Equal(error.Message, n.Why);
        Assert.Contains("/mnt/backup/repo", n.NextStep);
        Assert.Contains("mounted", n.NextStep);
        Assert.Contains("Invoke-VmCheckpointSchedule -Name 'nightly'", n.NextStep);
    }

    [Fact]
    public void AFolderThatIsNoRepositorySaysHowToMakeOne()
    {
        var n = Report("web01").Failure(new RepositoryNotFoundException("/x is not a VmCheckpoint repository", unreachable: false));
        Assert.Contains("New-VmCheckpointRepository", n.NextStep);
    }

    [Fact]
    public void FailedVmsAreNamedEachWithItsErrorBesideThoseCheckpointed()
    {
        var report = Report("*");
        report.Checkpointed("db01", "20250101T040000Z-ab12");
        report.Failed("ghost", new VmNotFoundException("No domain named 'ghost' on qemu:///system."));
        report.Failed("web02", new HypervisorUnavailableException("qemu:///system: connection refused"));
        var n = report.Failure(new InvalidOperationException("Schedule 'nightly': 2 VMs failed: ..."));

        Assert.Contains("failed for 2 of 3 VMs", n.Subject);
        Assert.Contains("ghost, web02 failed", n.What);
        Assert.Contains("db01 (20250101T040000Z-ab12) was checkpointed", n.What);
        Assert.Contains("ghost: No domain named 'ghost'", n.Why);
        Assert.Contains("web02: qemu:///system: connection refused", n.Why);
        Assert.Contains("virsh list --all", n.NextStep);
        Assert.Contains("hypervisor host is up", n.NextStep);
    }

    [Fact]
    public void ASuccessListsTheCheckpoints()
    {
        var report = Report("web*");
        report.Checkpointed("web01", "id-1");
        report.Checkpointed("web02", "id-2");
        var n = report.Success();
        Assert.Equal(NoticeKind.Success, n.Kind);
        Assert.Contains("succeeded", n.Subject);
        Assert.Contains("web01 (id-1), web02 (id-2)", n.What);
    }

    [Fact]
    public void ACallerThatKnowsTheNextStepBetterGivesIt()
    {
        var n = Report("web01").Failure(new Exception("the previous run is still going"), nextStep: "Wait.");
        Assert.Equal("Wait.", n.NextStep);
    }

    [Fact]
    public void ARestoredVmSaysWhichCheckpointItRunsAndWhatWasLost()
    {
        var e = new HealthEvent
        {
            VmName = "web", Host = "qemu:///system", EventKind = HealthEventKind.Action, Condition = "Crashed", Action = "RestoreLatest", Attempt = 2,
            Outcome = JobResult.Succeeded, CheckpointId = "20250101T040000Z-ab12", Message = "Restored checkpoint 20250101T040000Z-ab12 of 2025-01-01 04:00:00Z on qemu:///system, booted.",
        };
        var n = HealthNotices.For(e)!;

        Assert.Equal(NoticeKind.Restored, n.Kind);
        Assert.Equal("VM", n.SourceKind);
        Assert.Equal("web", n.Source);
        Assert.Contains("VM 'web' restored", n.Subject);
        Assert.Contains(e.Message, n.What);
        Assert.Contains("crashed", n.Why);
        Assert.Contains("20250101T040000Z-ab12", n.NextStep);
        Assert.Contains("Get-VmHealthEvent -Name 'web'", n.NextStep);
    }

    [Fact]
    public void AVmGivenUpOnSaysWhatToDoByHand()
    {
        var e = new HealthEvent { VmName = "web", Host = "qemu:///system", EventKind = HealthEventKind.GaveUp, Condition = "PausedOnError", Attempt = 3,
            Message = "I/O error: 3 attempts in 01:00:00; an administrator must step in." };
        var n = HealthNotices.For(e)!;

        Assert.Equal(NoticeKind.GaveUp, n.Kind);
        Assert.Contains("gave up on VM 'web'", n.Subject);
        Assert.Contains("after 3 attempts", n.What);
        Assert.Contains("paused on a disk I/O error", n.What);
        Assert.Equal(e.Message, n.Why);
        Assert.Contains("Restore-VmCheckpoint -Name 'web'", n.NextStep);
    }

    [Theory]
    [InlineData(HealthEventKind.Detected, null, null)]
    [InlineData(HealthEventKind.Waiting, null, null)]
    [InlineData(HealthEventKind.Action, "Restart", JobResult.Succeeded)]
    [InlineData(HealthEventKind.Action, "RestoreLatest", JobResult.Failed)]
    public void OtherHealthEventsAreNoNews(HealthEventKind kind, string? action, JobResult? result)
    {
        Assert.Null(HealthNotices.For(new HealthEvent { VmName = "web", EventKind = kind, Action = action, Outcome = result, Condition = "Crashed" }));
    }

    private static Notice Sample() => new()
    {
        Kind = NoticeKind.Failure, SourceKind = "schedule", Source = "nightly", Subject = "VmCheckpoint: schedule 'nightly' failed on kvm01",
        What = "The scheduled checkpoint of web01\r\n failed.", Why = "It \"broke\"\n\tbadly; ünïcode ok", NextStep = "Fix it.", Host = "kvm01",
        Time = new DateTime(2025, 1, 2, 3, 4, 5, DateTimeKind.Utc),
    };

    [Fact]
    public void TheMailTextLabelsEachPart()
    {
        string body = Sample().Body;
        Assert.StartsWith("VmCheckpoint: schedule 'nightly' failed on kvm01\n\n", body);
        Assert.Contains("\nWhat:      The scheduled checkpoint of web01", body);
        Assert.Contains("\nNext step: Fix it.\n", body);
        Assert.Contains("\nSchedule:  nightly\n", body);
        Assert.Contains("\nTime:      2025-01-02 03:04:05Z\n", body);
    }

    [Fact]
    public void OneLineHasNoLineBreaks()
    {
        string line = Sample().OneLine;
        Assert.DoesNotMatch("[\r\n\t]", line);
        Assert.Contains("What: The scheduled checkpoint of web01 failed. Why: It \"broke\" badly; ünïcode ok Next step: Fix it.", line);
    }

    [Fact]
    public void TheRfc5424LineHasEveryHeaderField()
    {
        string line = SyslogChannel.Rfc5424Line(Sample(), 4242);
        // daemon (3) * 8 + err (3) = 27
        Assert.Matches(new Regex(@"^<27>1 2025-01-02T03:04:05\.000Z kvm01 vmcheckpoint 4242 Failure - VmCheckpoint: schedule 'nightly' failed on kvm01\. What: "), line);
    }

    [Fact]
    public void TheLocalLineIsWhatSyslogOfTheCLibrarySends()
    {
        var notice = Sample();
        notice.Kind = NoticeKind.Restored;
        string line = SyslogChannel.LocalLine(notice, 7);
        // daemon (3) * 8 + warning (4) = 28; "Jan  2" is padded as syslog(3) pads it.
        Assert.Matches(new Regex(@"^<28>[A-Z][a-z]{2} [ 123]\d \d\d:\d\d:\d\d vmcheckpoint\[7\]: VmCheckpoint: schedule"), line);
    }

    [Fact]
    public void ALongNoticeIsCutToWhatEveryReceiverTakes()
    {
        var notice = Sample();
        notice.Why = string.Concat(Enumerable.Repeat("ü", 5000));
        string line = SyslogChannel.Rfc5424Line(notice, 1);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(line) <= 2048);
        Assert.EndsWith("...", line);
    }

    [Fact]
    public void TheWebhookBodyIsJsonOfEveryField()
    {
        using var doc = JsonDocument.Parse(WebhookChannel.Json(Sample()));
        var root = doc.RootElement;
        Assert.Equal("Failure", root.GetProperty("kind").GetString());
        Assert.Equal("nightly", root.GetProperty("source").GetString());
        Assert.Equal("schedule", root.GetProperty("sourceKind").GetString());
        Assert.Equal("It \"broke\"\n\tbadly; ünïcode ok", root.GetProperty("why").GetString());
        Assert.Equal("Fix it.", root.GetProperty("nextStep").GetString());
        Assert.Equal(Sample().OneLine, root.GetProperty("text").GetString());
        Assert.Equal(new DateTime(2025, 1, 2, 3, 4, 5, DateTimeKind.Utc), root.GetProperty("time").GetDateTime().ToUniversalTime());
    }

    [Fact]
    public void TheMailCarriesTheNoticeAndHeadersForFilters()
    {
        var settings = new NotificationSettings { SmtpServer = "smtp", From = "VmCheckpoint <backup@example.com>", To = new List<string> { "ops@example.com" } };
        var mail = MailChannel.Message(settings, Sample());
        Assert.Equal("VmCheckpoint: schedule 'nightly' failed on kvm01", mail.Subject);
        Assert.Equal("backup@example.com", mail.From.Mailboxes.Single().Address);
        Assert.Equal("ops@example.com", mail.To.Mailboxes.Single().Address);
        Assert.Equal("Failure", mail.Headers["X-VmCheckpoint-Kind"]);
        Assert.Contains("Next step: Fix it.", mail.TextBody);
    }

    [Theory]
    [InlineData(false, 25, MailKit.Security.SecureSocketOptions.None)]
    [InlineData(true, 587, MailKit.Security.SecureSocketOptions.StartTls)]
    [InlineData(true, 465, MailKit.Security.SecureSocketOptions.SslOnConnect)]
    public void UseSslIsStartTlsOrTlsOnConnectFor465(bool useSsl, int port, MailKit.Security.SecureSocketOptions expected)
    {
        Assert.Equal(expected, MailChannel.Security(new NotificationSettings { UseSsl = useSsl, Port = port }));
    }
}
