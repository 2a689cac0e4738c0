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
        Kind = ScheduleKind.Checkpoint,
        VmNames = vms.ToList(),
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
        var failed = Assert.Single(_catalog.GetJobs(j => j.Result == JobResult.Failed));
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
        Assert.Equal(JobResult.Failed, Assert.Single(_catalog.GetJobs()).Result);
    }
}
