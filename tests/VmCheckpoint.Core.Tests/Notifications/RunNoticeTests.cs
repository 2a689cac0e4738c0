using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Health;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Notifications;
using VmCheckpoint.Core.Scheduling;
using VmCheckpoint.Core.Tests.Fakes;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Notifications;

/// <summary>
/// The hooks: a scheduled run and the health watcher, on a fake host over a real repository, send their notices to a
/// real UDP syslog socket; what arrives names the schedule or VM, what failed and why.
/// </summary>
public sealed class RunNoticeTests : IDisposable
{
    private readonly TestRepository _t = new();
    private readonly CheckpointCatalog _catalog;
    private readonly FakeHypervisor _host = new("qemu:///fake");
    private readonly ScheduleStore _store;
    private readonly UdpSyslogListener _syslog = new();
    private readonly RecordingReporter _reporter = new();
    // The run lock is machine-wide, by schedule name: a name of its own keeps parallel test runs apart.
    private readonly string _name = "nightly-" + Guid.NewGuid().ToString("N").Substring(0, 8);

    public RunNoticeTests()
    {
        _catalog = new CheckpointCatalog(_t.File("catalog.db"));
        _store = new ScheduleStore(_t.File("schedule-root"));
        foreach (var vm in new[] { "web01", "db01" })
        {
            string disk = _t.File(vm + ".raw");
            ImageFiles.CreateRaw(disk, 128 * 1024, (0, new byte[] { (byte)vm.Length, 9 }));
            _host.Vms[vm] = (VmConditionKind.Running, new[] { disk });
        }
    }

    public void Dispose()
    {
        _syslog.Dispose();
        _catalog.Dispose();
        _t.Dispose();
    }

    private NotificationSettings Settings(NotifyOn on = NotifyOn.Failure) => new() { On = on, Syslog = true, SyslogServer = _syslog.Server };

    private ScheduleDefinition Schedule(string repository, params string[] vms) => new()
    {
        Name = _name, ScheduleKind = ScheduleKind.Checkpoint, VmNames = new(vms), Interval = TimeSpan.FromHours(1), Repository = repository,
        Hypervisor = HypervisorNames.HyperV, // reached through the connector's factory: the fake host
    };

    private ScheduledRun Run(NotificationSettings? settings) =>
        new(_store, _catalog, _reporter, new HypervisorConnector(_ => _host), new FixedSettings(settings));

    [Fact]
    public void ARunWhoseRepositoryIsGoneIsNotifiedAndLogged()
    {
        string gone = _t.File("deleted-repo");
        Assert.ThrowsAny<Exception>(() => Run(Settings()).Execute(Schedule(gone, "web01"), CancellationToken.None));

        string line = Assert.Single(_syslog.ReceiveAll());
        Assert.Contains($"schedule '{_name}' failed", line);
        Assert.Contains("web01", line);
        Assert.Contains("does not exist or cannot be reached", line);
        Assert.Contains("Next step: Check that " + gone, line);
        var job = Assert.Single(_catalog.GetJobs());
        Assert.Equal(JobResult.Failed, job.Outcome);
        Assert.Equal(gone, job.Repository);
        Assert.Contains(_name, job.Error);
    }

    [Fact]
    public void AMissingVmIsNotifiedWithTheOthersThatWereCheckpointed()
    {
        Assert.Throws<InvalidOperationException>(() => Run(Settings()).Execute(Schedule(_t.Repository.Path, "ghost", "db01"), CancellationToken.None));

        string line = Assert.Single(_syslog.ReceiveAll());
        Assert.Contains("failed for 1 of 2 VMs", line);
        Assert.Contains("ghost failed; db01 (", line);
        Assert.Contains("Why: ghost: ", line);
    }

    [Fact]
    public void ASuccessfulRunIsNotifiedOnlyWithAlways()
    {
        Run(Settings()).Execute(Schedule(_t.Repository.Path, "web01"), CancellationToken.None);
        Assert.Empty(_syslog.ReceiveAll(500));

        Run(Settings(NotifyOn.Always)).Execute(Schedule(_t.Repository.Path, "web01"), CancellationToken.None);
        string line = Assert.Single(_syslog.ReceiveAll());
        Assert.Contains($"schedule '{_name}' succeeded", line);
        Assert.StartsWith("<30>1 ", line); // daemon.info
    }

    [Fact]
    public void ANotificationThatFailsLeavesTheRunsOwnOutcomeAlone()
    {
        var settings = new NotificationSettings { Syslog = true, SyslogServer = _t.File("no.sock"), On = NotifyOn.Always };
        var output = Run(settings).Execute(Schedule(_t.Repository.Path, "web01"), CancellationToken.None);

        Assert.Single(output.OfType<CheckpointInfo>());
        Assert.Contains("syslog", Assert.Single(_reporter.Warnings));
        var e = Assert.ThrowsAny<Exception>(() => Run(settings).Execute(Schedule(_t.File("gone"), "web01"), CancellationToken.None));
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void TheWatcherNotifiesARestoreAndAGiveUp()
    {
        new VmCheckpointJob(_t.Repository, _catalog, _host).Run("web01", new CheckpointPlan());
        var policy = new HealthPolicy { Action = RecoveryAction.RestoreLatest, MaxAttempts = 1, Cooldown = TimeSpan.Zero, RestoreFolder = _t.File("restored") };
        HealthWatcher Watcher() => new(_t.Repository, _catalog, _ => _host, _host.Host, policy, _reporter, new FixedSettings(Settings()));

        _host.Crash("web01");
        Watcher().CheckOnce(new[] { "web01" }, CancellationToken.None);
        string restored = Assert.Single(_syslog.ReceiveAll());
        Assert.StartsWith("<28>1 ", restored); // daemon.warning
        Assert.Contains("VM 'web01' restored from a checkpoint on qemu:///fake", restored);
        Assert.Contains("It was found crashed", restored);

        _host.Crash("web01");
        Watcher().CheckOnce(new[] { "web01" }, CancellationToken.None);
        string gaveUp = Assert.Single(_syslog.ReceiveAll());
        Assert.StartsWith("<27>1 ", gaveUp); // daemon.err
        Assert.Contains("gave up on VM 'web01'", gaveUp);
        Assert.Contains("an administrator must step in", gaveUp);
    }
}
