using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Health;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.Libvirt;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Watches VMs and brings back those that crash, from their latest checkpoint if need be.</summary>
    [Cmdlet(VerbsCommon.Watch, "VmHealth", SupportsShouldProcess = true)]
    [OutputType(typeof(HealthEvent))]
    public sealed class WatchVmHealthCommand : VmCheckpointCmdlet
    {
        /// <summary>VMs to watch; all VMs of the host by default.</summary>
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[]? Name { get; set; }

        [Parameter]
        [ValidateNotNullOrEmpty]
        public string ConnectionUri { get; set; } = LibvirtConnection.DefaultUri;

        /// <summary>The VMs' hypervisor: Libvirt (by default) or HyperV.</summary>
        [Parameter]
        [ValidateSet(HypervisorNames.Libvirt, HypervisorNames.HyperV, IgnoreCase = true)]
        public string Hypervisor { get; set; } = HypervisorNames.Libvirt;

        /// <summary>The Hyper-V hosts to watch (with -Hypervisor HyperV), one or several; this computer by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string[]? ComputerName { get; set; }

        /// <summary>With -Hypervisor HyperV and -ComputerName: the account for the remote host (Hyper-V commands and a CIM session).</summary>
        [Parameter]
        [Credential]
        [ValidateNotNull]
        public PSCredential Credential { get; set; } = PSCredential.Empty;

        protected override PSCredential? HostCredential => Credential == PSCredential.Empty ? null : Credential;

        [Parameter]
        public RecoveryAction Action { get; set; } = RecoveryAction.Auto;

        /// <summary>Where to restore when acting in place fails or the VM's host cannot be reached: a libvirt URI, or a Hyper-V computer name.</summary>
        [Parameter]
        [Alias("TargetComputerName")]
        [ValidateNotNullOrEmpty]
        public string? TargetConnectionUri { get; set; }

        /// <summary>Check and act once, then return (for Task Scheduler and systemd timers).</summary>
        [Parameter]
        public SwitchParameter Once { get; set; }

        [Parameter]
        [ValidateRange(1, 100)]
        public int MaxAttempts { get; set; } = 3;

        /// <summary>Wait before a second attempt on the same VM, doubled before each further one.</summary>
        [Parameter]
        public TimeSpan Cooldown { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>How often to check, as a backstop.</summary>
        [Parameter]
        public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

        /// <summary>Folder for restored disks (&lt;folder&gt;/&lt;vm key&gt;/&lt;checkpoint id&gt;).</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string RestorePath { get; set; } = "/var/lib/libvirt/images/vmcheckpoint-restored";

        /// <summary>Write a crashed VM's disks before starting it (the restore before instant restore), also on libvirt.</summary>
        [Parameter]
        public SwitchParameter FullRestore { get; set; }

        protected override void EndProcessing()
        {
            try
            {
                var repository = OpenSynchronized();
                var policy = new HealthPolicy
                {
                    Action = Action, TargetUri = TargetConnectionUri, MaxAttempts = MaxAttempts,
                    Cooldown = Cooldown, Interval = Interval, RestoreFolder = ResolvePath(RestorePath),
                    Instant = !FullRestore,
                };
                bool hyperV = HypervisorNames.IsHyperV(Hypervisor);
                var locations = HostLocationsOf(Hypervisor, ConnectionUri, ComputerName).Select(l => l ?? "").ToList();
                string hosts = hyperV ? (ComputerName is { Length: > 0 } ? string.Join(", ", ComputerName) : "this Hyper-V host") : ConnectionUri;
                if (!ShouldProcess(Name is null ? $"every VM of {hosts}" : string.Join(", ", Name) + " on " + hosts, $"Watch and {Action} on failure")) return;
                Func<string, IHypervisor> connect = where => ConnectHypervisor(Hypervisor, where.Length == 0 ? null : where);
                // One host: the names as given (a named VM that is gone is the watcher's to see). Several: on each host the
                // VMs it has that the names match, wildcards included.
                Func<string, IReadOnlyList<string>?> namesOn = location =>
                {
                    if (Name is null || locations.Count == 1) return Name;
                    using var host = connect(location);
                    var listed = host.ListVms();
                    return Name.Select(n => new VmNamePattern(n)).SelectMany(p => listed.Where(p.IsMatch)).Distinct(StringComparer.Ordinal).ToList();
                };
                if (Once)
                {
                    foreach (var e in RunJob("Checking VM health", (reporter, token) =>
                                 locations.SelectMany(location => new HealthWatcher(repository, Catalog, connect, location, policy, reporter).CheckOnce(namesOn(location), token)).ToList()))
                        WriteObject(e);
                    return;
                }
                // Runs until Ctrl+C: events reach the pipeline as they happen (Export-Csv works). One watcher per host, side
                // by side; a host that fails ends the watch with its error once the others have stopped.
                try
                {
                    RunJob("Watching VM health", (reporter, token) =>
                    {
                        using var failed = CancellationTokenSource.CreateLinkedTokenSource(token);
                        var watchers = locations.Select(location => Task.Factory.StartNew(() =>
                        {
                            try { new HealthWatcher(repository, Catalog, connect, location, policy, reporter).Run(namesOn(location), Emit, failed.Token); }
                            catch { failed.Cancel(); throw; }
                        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();
                        try { Task.WaitAll(watchers); }
                        catch (AggregateException e) { throw e.InnerExceptions.FirstOrDefault(x => !(x is OperationCanceledException)) ?? e.InnerExceptions[0]; }
                        return true;
                    });
                }
                catch (PipelineStoppedException) when (CancelToken.IsCancellationRequested)
                {
                    // Ctrl+C: the watcher has stopped cleanly.
                }
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Watch", ConnectionUri));
            }
            finally
            {
                base.EndProcessing();
            }
        }
    }

    /// <summary>Reads the catalog's health log: what the watcher detected and did, newest first.</summary>
    [Cmdlet(VerbsCommon.Get, "VmHealthEvent")]
    [OutputType(typeof(HealthEvent))]
    public sealed class GetVmHealthEventCommand : VmCheckpointCmdlet
    {
        [Parameter(Position = 0)]
        [Alias("VmName")]
        [SupportsWildcards]
        public string Name { get; set; } = "*";

        [Parameter]
        public HealthEventKind? Kind { get; set; }

        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int Last { get; set; } = int.MaxValue;

        protected override void ProcessRecord()
        {
            var pattern = new WildcardPattern(Name, WildcardOptions.IgnoreCase);
            foreach (var e in Catalog.GetHealthEvents(h => pattern.IsMatch(h.VmName ?? "") && (Kind is null || h.EventKind == Kind), Last)) WriteObject(e);
        }
    }
}
