using VmCheckpoint.Core.Reporting;
using Xunit;

namespace VmCheckpoint.Core.Tests.Reporting;

public sealed class TransferProgressTests
{
    private sealed class Recorder : IJobReporter
    {
        public List<(string Status, int Percent)> Seen { get; } = new();
        public void Progress(string activity, string status, int percent) => Seen.Add((status, percent));
        public void Verbose(string message) { }
        public void Warning(string message) { }
    }

    [Fact]
    public void SaysBytesDoneOfTheTotalRateAndTimeLeft()
    {
        string line = TransferProgress.Describe("web01: disk vda (1 of 2)", 1L << 30, 3L << 30, TimeSpan.FromSeconds(4));
        Assert.Equal("web01: disk vda (1 of 2): 1.0 GiB of 3.0 GiB, 256 MiB/s, 8 s left", line);
        Assert.Equal("x: 0 B of 3.0 GiB", TransferProgress.Describe("x", 0, 3L << 30, TimeSpan.FromSeconds(4)));
        Assert.Equal("x: 3.0 GiB of 3.0 GiB, 768 MiB/s", TransferProgress.Describe("x", 3L << 30, 3L << 30, TimeSpan.FromSeconds(4)));
        Assert.Equal("2 h 05 min", TransferProgress.Duration(TimeSpan.FromMinutes(125)));
        Assert.Equal("1 min 30 s", TransferProgress.Duration(TimeSpan.FromSeconds(90)));
    }

    [Fact]
    public void ReportsTheStartAndTheEndAndFewLinesBetween()
    {
        var recorder = new Recorder();
        var progress = new TransferProgress(recorder, "Checkpointing", "vm: disk a", 1 << 20);
        progress.Start();
        for (int i = 1; i <= 10_000; i++) progress.Report(i, 10_000);
        Assert.Equal(0, recorder.Seen[0].Percent);
        Assert.Equal(100, recorder.Seen[^1].Percent);
        Assert.StartsWith("vm: disk a: 9.8 GiB of 9.8 GiB", recorder.Seen[^1].Status);
        Assert.InRange(recorder.Seen.Count, 2, 25);
    }
}
