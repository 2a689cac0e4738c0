using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Tests.Fakes;

/// <summary>
/// A hypervisor host held in memory: VMs with a condition each, whose checkpoints read real image files, and a log
/// of what was asked of it (start, stop, register). Small on purpose: it is what HealthWatcher and the jobs see.
/// </summary>
internal sealed class FakeHypervisor : IHypervisor
{
    public const string HypervisorName = "Fake";

    public FakeHypervisor(string host = "fakehost")
    {
        Host = host;
    }

    public string Name => HypervisorName;
    public string Host { get; }
    public DiskFormat PreferredDiskFormat => DiskFormat.Raw;
    /// <summary>Each VM's condition and its disk files.</summary>
    public Dictionary<string, (VmConditionKind Condition, string[] Disks)> Vms { get; } = new();
    public List<string> Calls { get; } = new();
    public List<RegistrationRequest> Registered { get; } = new();
    /// <summary>Makes StartVm throw (a VM whose start fails: missing disk, host out of memory).</summary>
    public Exception? FailStart { get; set; }
    public bool Disposed { get; private set; }
    /// <summary>Called with the VM's name as its checkpoint begins (a slow VM, for the backup window).</summary>
    public Action<string>? OnBeginCheckpoint { get; set; }

    public IReadOnlyList<string> ListVms() => Vms.Keys.ToList();

    public IVmCheckpointSession BeginCheckpoint(string vmName, CheckpointPlan plan, IJobReporter reporter)
    {
        if (!Vms.TryGetValue(vmName, out var vm)) throw new VmNotFoundException($"No VM '{vmName}' on {Host}.");
        OnBeginCheckpoint?.Invoke(vmName);
        var source = new FakeCheckpointSource(() => ImageFileSource.OpenDiskFiles(vm.Disks)) { Name = Name, TrackingId = "t-" + Guid.NewGuid().ToString("N") };
        return source.BeginCheckpoint(vmName, plan, reporter);
    }

    public void CheckRegistration(string vmName, string configuration, string? newName, bool resumeMemory) { }

    public string Register(RegistrationRequest request, IJobReporter reporter)
    {
        string name = request.NewName ?? request.VmName;
        Calls.Add("Register " + name);
        Registered.Add(request);
        Vms[name] = (request.Start ? VmConditionKind.Running : VmConditionKind.Stopped, request.Disks.Select(d => d.Path).ToArray());
        return name;
    }

    public bool VmExists(string name) => Vms.ContainsKey(name);

    public VmCondition GetCondition(string name) =>
        Vms.TryGetValue(name, out var vm) ? new VmCondition(vm.Condition, $"'{name}' is {vm.Condition}") : new VmCondition(VmConditionKind.Missing, $"no VM '{name}'");

    public IDisposable? SubscribeToStateChanges(Action<string> changed) => null;

    public IReadOnlyList<string> ChangeTracking(string vmName, bool remove) =>
        Vms.ContainsKey(vmName) ? new List<string>() : throw new VmNotFoundException($"No VM '{vmName}' on {Host}.");

    public void StartVm(string name)
    {
        Calls.Add("Start " + name);
        if (FailStart != null) throw FailStart;
        Vms[name] = (VmConditionKind.Running, Vms[name].Disks);
    }

    public void StopVm(string name)
    {
        Calls.Add("Stop " + name);
        Vms[name] = (VmConditionKind.Stopped, Vms[name].Disks);
    }

    public void Crash(string name) => Vms[name] = (VmConditionKind.Crashed, Vms[name].Disks);

    public void Dispose() => Disposed = true;
}
