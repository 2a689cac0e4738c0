using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>
    /// Anything that gives a point-in-time view of one VM's disks: a hypervisor host, or image files that no VM runs on.
    /// <see cref="Jobs.VmCheckpointJob"/> is the one orchestrator of every source.
    /// </summary>
    public interface ICheckpointSource
    {
        /// <summary>The hypervisor name recorded in the manifest (<see cref="HypervisorNames"/>).</summary>
        string Name { get; }

        /// <summary>Opens the view: nothing is written anywhere before every disk has been opened and validated.</summary>
        IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter);
    }
}
