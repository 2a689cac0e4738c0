using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Tests.Fakes;

/// <summary>
/// A checkpoint source over real image files that records what the orchestrator asked of it and when, and fails
/// where a test says: the contract of <see cref="IVmCheckpointSession"/> checked without a hypervisor.
/// </summary>
internal sealed class FakeCheckpointSource : ICheckpointSource
{
    private readonly Func<IReadOnlyList<DiskSource>> _open;

    public FakeCheckpointSource(Func<IReadOnlyList<DiskSource>> open)
    {
        _open = open;
    }

    public string Name { get; set; } = "Fake";
    /// <summary>Every call, in order: Begin, Seal, Commit, Dispose.</summary>
    public List<string> Calls { get; } = new();
    public CheckpointPlan? LastPlan { get; private set; }
    public Exception? FailBegin { get; set; }
    public Exception? FailSeal { get; set; }
    public string TrackingId { get; set; } = "track-1";

    public IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter)
    {
        Calls.Add("Begin");
        LastPlan = plan;
        if (FailBegin != null) throw FailBegin;
        return new Session(this, vmName, _open());
    }

    private sealed class Session : IVmCheckpointSession
    {
        private readonly FakeCheckpointSource _source;

        public Session(FakeCheckpointSource source, string vmName, IReadOnlyList<DiskSource> disks)
        {
            _source = source;
            VmName = vmName;
            Disks = disks;
        }

        public string VmName { get; }
        public string? VmId => "uuid-1";
        public string Host => "fakehost";
        public string Hypervisor => _source.Name;
        public string? Configuration => "<domain/>";
        public IReadOnlyList<DiskSource> Disks { get; }
        public DiskSource? Memory => null;
        public string? NewTrackingId => _source.TrackingId;
        public double PauseSeconds => 0.05;
        public string? Note => null;

        public string? Seal()
        {
            _source.Calls.Add("Seal");
            if (_source.FailSeal != null) throw _source.FailSeal;
            return NewTrackingId;
        }

        public void Commit() => _source.Calls.Add("Commit");

        public void Dispose()
        {
            _source.Calls.Add("Dispose");
            foreach (var d in Disks) d.Image.Dispose();
        }
    }
}
