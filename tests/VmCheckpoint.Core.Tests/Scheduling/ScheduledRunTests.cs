using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Scheduling;
using VmCheckpoint.Core.Tests.Fakes;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Scheduling;

/// <summary>One run of a schedule against a fake host and a real repository: who is checkpointed, what fails, what is logged.</summary>
public sealed class ScheduledRunTests : IDisposable
{
    private readonly TestRepository _t = new();
    private readonly CheckpointCatalog _catalog;
    private readonly FakeHypervisor _host = new();
    private readonly ScheduleStore _store;

    public ScheduledRunTests()
    {
        _catalog = new CheckpointCatalog(_t.File("catalog.db"));
        _store = new ScheduleStore(_t.File("schedule-root"));
        foreach (var vm in new[] { "web01", "web02", "db01" })
        {
            string disk = _t.File(vm + ".raw");
            ImageFiles.CreateRaw(disk, 128 * 1024, (0, new byte[] { (byte)vm.Length, 7 }));
            _host.Vms[vm] = (VmConditionKind.Running, new[] { disk });
        }
    }

    public void Dispose()
    {
        _catalog.Dispose();
        _t.Dispose();
    }

    private ScheduleDefinition Schedule(params string[] vms) => new()
    {
        Name = "test-" + Guid.NewGuid().ToString("N").Substring(0, 8),
        ScheduleKind = ScheduleKind.Checkpoint,
        VmNames = new(vms),
        Interval = TimeSpan.FromHours(1),
        Repository = _t.Repository.Path,
        Hypervisor = HypervisorNames.HyperV, // reached through the connector's factory: the fake host
    };

    private ScheduledRun Run() => new(_store, _catalog, connector: new HypervisorConnector(_ => _host));

    [Fact]
    public void CheckpointsEveryVmThePatternsNameOnce()
    {
        var output = Run().Execute(Schedule("web*", "web01"), CancellationToken.None);

        var names = output.OfType<CheckpointInfo>().Select(c => c.VmName).ToList();
        Assert.Equal(new[] { "web01", "web02" }, names);
        Assert.Empty(_t.Repository.ListCheckpoints("db01"));
        Assert.True(_host.Disposed);
    }

    [Fact]
    public void AppliesRetentionToTheScheduledVmsOnly()
    {
        var schedule = Schedule("web01");
        new VmCheckpointJob(_t.Repository, _catalog, _host).Run("db01", new CheckpointPlan());
        new VmCheckpointJob(_t.Repository, _catalog, _host).Run("db01", new CheckpointPlan());
        schedule.KeepLast = 1;
        Run().Execute(schedule, CancellationToken.None);
        Run().Execute(schedule, CancellationToken.None);

        Assert.Single(_t.Repository.ListCheckpoints("web01"));
        Assert.Equal(2, _t.Repository.ListCheckpoints("db01").Count);
    }

    [Fact]
    public void AMissingVmFailsTheRunAfterTheOthersAndIsInTheJobLog()
    {
        var e = Assert.Throws<InvalidOperationException>(() => Run().Execute(Schedule("ghost", "db01"), CancellationToken.None));

        Assert.Contains("ghost", e.Message);
        Assert.Single(_t.Repository.ListCheckpoints("db01"));
        var failed = Assert.Single(_catalog.GetJobs(j => j.Outcome == JobResult.Failed));
        Assert.Equal("ghost", failed.VmName);
    }

    [Fact]
    public void ARunThatFindsThePreviousOneGoingDoesNothingAndSaysSo()
    {
        var schedule = Schedule("web01");
        using (var held = _store.TryTakeRunLock(schedule.Name))
        {
            Assert.NotNull(held);
            Assert.Throws<ScheduleOverlapException>(() => Run().Execute(schedule, CancellationToken.None));
        }
        Assert.Empty(_t.Repository.ListCheckpoints("web01"));
        Assert.Equal(JobResult.Failed, Assert.Single(_catalog.GetJobs()).Outcome);
    }

    [Fact]
    public void ARunPastItsWindowStopsTheVmUnderWayLeavesTheRestAndSaysSo()
    {
        var schedule = Schedule("web01", "web02", "db01");
        schedule.MaxDuration = TimeSpan.FromSeconds(1);
        schedule.KeepLast = 1;
        _host.OnBeginCheckpoint = vm => { if (vm == "web02") Thread.Sleep(TimeSpan.FromSeconds(3)); };

        var e = Assert.Throws<BackupWindowExceededException>(() => Run().Execute(schedule, CancellationToken.None));

        Assert.Contains("00:00:01 window", e.Message);
        Assert.Contains("web02, db01", e.Message);
        Assert.Contains("-MaxDuration", e.Message);
        Assert.Empty(_t.Repository.ListCheckpoints("web02"));
        Assert.Empty(_t.Repository.ListCheckpoints("db01"));
        var logged = _catalog.GetJobs(j => j.Outcome == JobResult.Failed && j.Kind == "Scheduled").Single();
        Assert.Contains("window", logged.Error);

        // Nothing left behind: the next run, with time enough, checkpoints all three.
        _host.OnBeginCheckpoint = null;
        schedule.MaxDuration = null;
        Run().Execute(schedule, CancellationToken.None);
        Assert.Single(_t.Repository.ListCheckpoints("web02"));
        Assert.Single(_t.Repository.ListCheckpoints("db01"));
    }

    [Theory]
    [InlineData(new[] { "*" }, "checkpoint-all")]
    [InlineData(new[] { "web*", "db01" }, "checkpoint-web-any-db01")]
    [InlineData(new[] { "my vm.01" }, "checkpoint-my-vm-01")]
    public void ADefaultNameIsReadableWhateverTheVmNames(string[] vms, string expected)
    {
        Assert.Equal(expected, ScheduleDefinition.DefaultName(ScheduleKind.Checkpoint, vms));
        ScheduleDefinition.ValidateName(expected);
    }

    [Fact]
    public void ADefaultNameForManyVmsStaysUsableAndDistinct()
    {
        var many = Enumerable.Range(0, 40).Select(i => "server" + i).ToArray();
        string a = ScheduleDefinition.DefaultName(ScheduleKind.Checkpoint, many);
        string b = ScheduleDefinition.DefaultName(ScheduleKind.Checkpoint, many.Reverse().ToArray());
        ScheduleDefinition.ValidateName(a);
        Assert.NotEqual(a, b);
    }

    [Theory]
    [InlineData("02:30", new DayOfWeek[0], "30 2 * * *", "*-*-* 02:30:00")]
    [InlineData("23:05", new[] { DayOfWeek.Friday, DayOfWeek.Monday }, "5 23 * * 1,5", "Mon,Fri *-*-* 23:05:00")]
    [InlineData("00:00", new[] { DayOfWeek.Sunday }, "0 0 * * 0", "Sun *-*-* 00:00:00")]
    public void ATimeOfDayBecomesCronFieldsAndASystemdCalendar(string at, DayOfWeek[] days, string cron, string calendar)
    {
        var s = new ScheduleDefinition { Name = "t", At = TimeSpan.Parse(at), DaysOfWeek = new VmCheckpoint.Core.Reporting.TextList(days.Select(d => d.ToString())) };
        s.Validate();
        Assert.Equal(cron, CronScheduler.TimeFields(s));
        Assert.Equal("OnCalendar=" + calendar, SystemdScheduler.TimerLines(s)[0]);
        Assert.Contains("Persistent=true", SystemdScheduler.TimerLines(s));
    }

    [Theory]
    [InlineData(null, "01:00:00", null)]          // neither
    [InlineData("02:30", "00:00:00", "01:00:00")] // both
    [InlineData("1.02:30", "00:00:00", null)]     // not a time of day
    [InlineData(null, "00:00:00", "00:00:30")]    // under a minute
    public void AScheduleNeedsAnIntervalOrATimeOfDay(string? at, string window, string? interval)
    {
        var s = new ScheduleDefinition
        {
            Name = "t", At = at is null ? null : TimeSpan.Parse(at),
            Interval = interval is null ? TimeSpan.Zero : TimeSpan.Parse(interval),
            MaxDuration = window == "00:00:00" ? null : TimeSpan.Parse(window),
        };
        if (at is null && interval is null) s.MaxDuration = TimeSpan.FromHours(1);
        Assert.Throws<ArgumentException>(() => s.Validate());
    }

    [Fact]
    public void CronRefusesSecondsInATimeOfDay()
    {
        var s = new ScheduleDefinition { Name = "t", At = new TimeSpan(2, 30, 15) };
        Assert.Contains("whole minutes", Assert.Throws<ArgumentException>(() => CronScheduler.TimeFields(s)).Message);
    }
}
