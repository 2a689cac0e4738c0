using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Health;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Tests.Fakes;
using VmCheckpoint.Core.Tests.Notifications;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Health;

/// <summary>
/// The watcher's policy on a fake host over a real repository and catalog: restart before rollback, escalation,
/// back-off, the cap on attempts, and hosts that cannot be reached. (The live Pester tests do the same on real VMs.)
/// </summary>
public sealed class HealthWatcherTests : IDisposable
{
    private readonly TestRepository _t = new();
    private readonly CheckpointCatalog _catalog;
    private readonly FakeHypervisor _host = new("qemu:///fake");
    private readonly FakeHypervisor _target = new("qemu:///target");
    private readonly string _disk;

    public HealthWatcherTests()
    {
        _catalog = new CheckpointCatalog(_t.File("catalog.db"));
        _disk = _t.File("vda.raw");
        ImageFiles.CreateRaw(_disk, 256 * 1024, (0, new byte[] { 1, 2, 3 }));
        _host.Vms["web"] = (VmConditionKind.Running, new[] { _disk });
        new VmCheckpointJob(_t.Repository, _catalog, _host).Run("web", new CheckpointPlan());
    }

    public void Dispose()
    {
        _catalog.Dispose();
        _t.Dispose();
    }

    /// <summary>This host's own notification settings, if it has any, are not the tests' business.</summary>
    private static readonly FixedSettings NoNotifications = new(null);

    private HealthWatcher Watcher(HealthPolicy policy) =>
        new(_t.Repository, _catalog, uri => uri == _target.Host ? _target : uri == _host.Host ? _host : throw new HypervisorUnavailableException($"{uri} is down"),
            _host.Host, WithFolder(policy), notifications: NoNotifications);

    private HealthPolicy WithFolder(HealthPolicy policy)
    {
        policy.RestoreFolder = _t.File("restored");
        return policy;
    }

    private static List<HealthEvent> Actions(IEnumerable<HealthEvent> events) => events.Where(e => e.EventKind == HealthEventKind.Action).ToList();

    [Fact]
    public void ByDefaultACrashedVmIsRestartedOnItsOwnDisk()
    {
        _host.Crash("web");
        var events = Watcher(new HealthPolicy()).CheckOnce(new[] { "web" }, CancellationToken.None);

        var action = Assert.Single(Actions(events));
        Assert.Equal("Restart", action.Action);
        Assert.Equal(JobResult.Succeeded, action.Outcome);
        Assert.Equal(new[] { "Start web" }, _host.Calls);
        Assert.Equal(new[] { _disk }, _host.Vms["web"].Disks);
    }

    [Fact]
    public void AVmThatCrashesAgainSoonAfterARestartIsRestored()
    {
        var policy = new HealthPolicy { Cooldown = TimeSpan.Zero };
        _host.Crash("web");
        Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None);
        _host.Crash("web");
        var events = Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None);

        var action = Assert.Single(Actions(events));
        Assert.Equal("RestoreLatest", action.Action);
        Assert.Equal(JobResult.Succeeded, action.Outcome);
        Assert.Equal(2, action.Attempt);
        var registered = Assert.Single(_host.Registered);
        Assert.StartsWith(policy.RestoreFolder, registered.Disks[0].Path);
        Assert.True(File.Exists(_disk), "the VM's own disk is never deleted");
    }

    [Fact]
    public void ARestorePrefersTheNewestCheckpointThatPassedItsBootTestOverANewerOneThatFailed()
    {
        var passed = _catalog.GetCheckpoints(_t.Repository.Id).Single();
        Thread.Sleep(20);
        var failed = new VmCheckpointJob(_t.Repository, _catalog, _host).Run("web", new CheckpointPlan());
        Thread.Sleep(20);
        var untested = new VmCheckpointJob(_t.Repository, _catalog, _host).Run("web", new CheckpointPlan());
        _catalog.RecordBootTest(_t.Repository.Id, passed.Id, passed: true, "its guest agent answered after 4.0 s", DateTime.UtcNow);
        _catalog.RecordBootTest(_t.Repository.Id, failed.Id, passed: false, "its guest agent did not answer within 60 s", DateTime.UtcNow);
        _host.Crash("web");
        var events = Watcher(new HealthPolicy { Action = RecoveryAction.RestoreLatest }).CheckOnce(new[] { "web" }, CancellationToken.None);

        var action = Assert.Single(Actions(events));
        Assert.Equal(JobResult.Succeeded, action.Outcome);
        Assert.Equal(passed.Id, action.CheckpointId);
        Assert.Contains("the newest whose boot test passed", action.Message);
        Assert.Contains(untested.Id, action.Message);
        Assert.Contains(passed.Id, Assert.Single(_host.Registered).Disks[0].Path);
    }

    [Fact]
    public void WithoutBootTestsARestoreTakesTheNewestAndSaysNoneWasTested()
    {
        Thread.Sleep(20);
        var newest = new VmCheckpointJob(_t.Repository, _catalog, _host).Run("web", new CheckpointPlan());
        _host.Crash("web");
        var events = Watcher(new HealthPolicy { Action = RecoveryAction.RestoreLatest }).CheckOnce(new[] { "web" }, CancellationToken.None);

        var action = Assert.Single(Actions(events));
        Assert.Equal(newest.Id, action.CheckpointId);
        Assert.Contains("none was boot-tested", action.Message);
    }

    [Fact]
    public void CheckpointsThatFailedTheirBootTestComeLastNewestFirstWithinEachKind()
    {
        CheckpointInfo At(int minute, string? boot) => new() { Id = "c" + minute, Time = new DateTime(2026, 1, 1, 0, minute, 0, DateTimeKind.Utc), BootResult = boot };
        var order = HealthWatcher.RestoreOrder(new[] { At(1, "Passed"), At(2, "Failed"), At(3, null), At(4, "Passed"), At(5, "Failed"), At(6, null) });
        Assert.Equal(new[] { "c4", "c1", "c6", "c3", "c5", "c2" }, order.Select(c => c.Id));
    }

    [Fact]
    public void ARestartThatFailsIsFollowedByARestoreInTheSameAttempt()
    {
        _host.FailStart = new HypervisorException("Cannot access storage file");
        _host.Crash("web");
        var events = Watcher(new HealthPolicy()).CheckOnce(new[] { "web" }, CancellationToken.None);

        var actions = Actions(events);
        Assert.Equal(new[] { "Restart", "RestoreLatest" }, actions.Select(a => a.Action));
        Assert.Equal(new JobResult?[] { JobResult.Failed, JobResult.Succeeded }, actions.Select(a => a.Outcome));
        Assert.All(actions, a => Assert.Equal(1, a.Attempt));
        Assert.Contains("Cannot access storage file", actions[0].Message);
    }

    [Fact]
    public void AVmPausedOnAnIoErrorIsRestoredNotRestarted()
    {
        _host.Vms["web"] = (VmConditionKind.PausedOnError, new[] { _disk });
        var events = Watcher(new HealthPolicy()).CheckOnce(new[] { "web" }, CancellationToken.None);

        Assert.Equal("RestoreLatest", Assert.Single(Actions(events)).Action);
        Assert.DoesNotContain("Start web", _host.Calls);
    }

    [Fact]
    public void RestoreLatestStaysForThoseWhoWantTheRollback()
    {
        _host.Crash("web");
        var events = Watcher(new HealthPolicy { Action = RecoveryAction.RestoreLatest }).CheckOnce(new[] { "web" }, CancellationToken.None);
        Assert.Equal("RestoreLatest", Assert.Single(Actions(events)).Action);
    }

    [Fact]
    public void EscalatesToTheTargetHostWhenEverythingInPlaceFails()
    {
        _host.FailStart = new HypervisorException("start failed");
        _host.Crash("web");
        // No checkpoint of the fake hypervisor on the target? The target is the same kind: its restore succeeds there.
        var policy = new HealthPolicy { TargetUri = _target.Host, Action = RecoveryAction.Restart };
        var events = Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None);

        var actions = Actions(events);
        Assert.Equal(new[] { "Restart", "RestoreElsewhere" }, actions.Select(a => a.Action));
        Assert.Equal(JobResult.Succeeded, actions[1].Outcome);
        Assert.Equal(_target.Host, actions[1].Host);
        Assert.Single(_target.Registered);
    }

    [Fact]
    public void AnUnreachableHostSendsTheVmToTheTarget()
    {
        var policy = WithFolder(new HealthPolicy { TargetUri = _target.Host });
        var watcher = new HealthWatcher(_t.Repository, _catalog, uri => uri == _target.Host ? _target : throw new HypervisorUnavailableException("connection refused"),
            "qemu:///gone", policy, notifications: NoNotifications);
        var events = watcher.CheckOnce(new[] { "web" }, CancellationToken.None);

        Assert.Equal("HostUnreachable", events[0].Condition);
        var action = Assert.Single(Actions(events));
        Assert.Equal("RestoreElsewhere", action.Action);
        Assert.Equal(JobResult.Succeeded, action.Outcome);
        // Moved: the watcher no longer looks for it on the old host.
        Assert.Empty(watcher.CheckOnce(new[] { "web" }, CancellationToken.None));
    }

    [Fact]
    public void GivesUpAfterMaxAttemptsOnceAndThenStaysQuiet()
    {
        var policy = new HealthPolicy { Action = RecoveryAction.Restart, MaxAttempts = 2, Cooldown = TimeSpan.Zero };
        var all = new List<HealthEvent>();
        for (int i = 0; i < 3; i++)
        {
            _host.Crash("web");
            all.AddRange(Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None));
        }
        Assert.Equal(2, Actions(all).Count);
        Assert.Equal(HealthEventKind.GaveUp, all.Last().EventKind);
        Assert.Empty(Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None));
        Assert.Equal(VmConditionKind.Crashed, _host.Vms["web"].Condition);
    }

    [Fact]
    public void WaitsOutTheBackOff()
    {
        var policy = new HealthPolicy { Action = RecoveryAction.Restart, Cooldown = TimeSpan.FromHours(1) };
        _host.Crash("web");
        Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None);
        _host.Crash("web");
        var events = Watcher(policy).CheckOnce(new[] { "web" }, CancellationToken.None);

        Assert.Equal(HealthEventKind.Waiting, Assert.Single(events).EventKind);
        Assert.Equal(VmConditionKind.Crashed, _host.Vms["web"].Condition);
    }

    [Fact]
    public void LeavesRunningAndDeliberatelyStoppedVmsAlone()
    {
        _host.Vms["off"] = (VmConditionKind.Stopped, new[] { _disk });
        Assert.Empty(Watcher(new HealthPolicy()).CheckOnce(null, CancellationToken.None));
        Assert.Empty(_host.Calls);
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(2, 30)]
    [InlineData(3, 60)]
    [InlineData(4, 120)]
    public void TheBackOffDoubles(int attempt, int seconds)
    {
        Assert.Equal(TimeSpan.FromSeconds(seconds), new HealthPolicy { Cooldown = TimeSpan.FromSeconds(30) }.BackOff(attempt));
    }

    [Fact]
    public void TheBackOffIsCapped()
    {
        var huge = new HealthPolicy { Cooldown = TimeSpan.FromSeconds(1) }.BackOff(int.MaxValue);
        Assert.Equal(TimeSpan.FromSeconds(1 << 20), huge);
    }
}
