using System;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using System.Threading;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Exports;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>What a boot test waits for, and how long.</summary>
    public sealed class BootTestOptions
    {
        /// <summary>A regular expression the serial console must show; null: the guest agent must answer.</summary>
        public Regex? ConsolePattern { get; set; }
        public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(5);
        /// <summary>Where the copies' folders (overlays, console logs) are made.</summary>
        public string WorkRoot { get; set; } = BootTestJob.DefaultWorkRoot;
    }

    /// <summary>The outcome of one boot test.</summary>
    public sealed class BootTestResult
    {
        public string CheckpointId { get; set; } = "";
        public string VmName { get; set; } = "";
        /// <summary>The isolated copy's name on the host.</summary>
        public string CopyName { get; set; } = "";
        /// <summary>Passed or Failed.</summary>
        public string Result { get; set; } = BootOutcome.Failed;
        public string Reason { get; set; } = "";
        public double Seconds { get; set; }
        public bool IsPassed => Result == BootOutcome.Passed;
    }

    /// <summary>
    /// Boots a checkpoint as an isolated copy, as Veeam's SureBackup does: the checkpoint's disks are served read-only
    /// from the repository (an export server), the copy runs on local qcow2 overlays over them under a new name, with no
    /// network interfaces and files of its own (<see cref="IBootTestHost"/>), until its guest agent answers or its
    /// console shows the pattern, or the time is up. Then the copy is stopped, its overlays (all it wrote) deleted and
    /// the export server stopped; the outcome goes into the job log and onto the checkpoint's catalog entry. Nothing is
    /// ever copied home, and the original VM is never touched.
    /// </summary>
    public sealed class BootTestJob
    {
        private readonly CheckpointRepository _repository;
        private readonly CheckpointCatalog _catalog;
        private readonly IHypervisor _hypervisor;
        private readonly IJobReporter _reporter;

        public BootTestJob(CheckpointRepository repository, CheckpointCatalog catalog, IHypervisor hypervisor, IJobReporter? reporter = null)
        {
            _repository = repository;
            _catalog = catalog;
            _hypervisor = hypervisor;
            _reporter = reporter ?? NullJobReporter.Instance;
        }

        /// <summary>/var/tmp (disk, not memory: a booting guest can write a lot), else the system's temporary folder.</summary>
        public static string DefaultWorkRoot =>
            Path.Combine(Directory.Exists("/var/tmp") ? "/var/tmp" : Path.GetTempPath(), "vmcheckpoint-boottest");

        public static bool Supports(IHypervisor hypervisor) => hypervisor is IBootTestHost;

        /// <summary>
        /// Boots the checkpoint and returns the outcome (a guest that does not come up is a Failed result, not an
        /// exception). Throws when the test cannot be made at all: no configuration in the checkpoint, a host that
        /// cannot boot copies, nothing to wait for (no agent channel and no pattern).
        /// </summary>
        public BootTestResult Run(CheckpointFile file, BootTestOptions options, CancellationToken cancellationToken = default)
        {
            if (!(_hypervisor is IBootTestHost host))
                throw new NotSupportedException($"{_hypervisor.Name} cannot boot a checkpoint as an isolated copy here: boot verification needs libvirt.");
            var manifest = _repository.ReadCheckpoint(file);
            if (string.IsNullOrEmpty(manifest.Configuration))
                throw new InvalidOperationException($"Checkpoint {manifest.Id} of '{manifest.VmName}' holds no VM configuration (it was taken from disk files): there is nothing to boot.");
            if (options.ConsolePattern is null && !host.HasGuestAgentChannel(manifest.Configuration!))
                throw new ArgumentException($"'{manifest.VmName}' has no guest agent channel (org.qemu.guest_agent.0) to ask whether it booted: give -ConsolePattern, a regular expression its serial console shows once it is up.");

            SweepLeftovers(options.WorkRoot, _reporter);
            string id = Guid.NewGuid().ToString("N").Substring(0, 8);
            var result = new BootTestResult { CheckpointId = manifest.Id, VmName = manifest.VmName, CopyName = $"{manifest.VmName}-boottest-{id}" };
            string folder = Path.Combine(options.WorkRoot, RepositoryLayout.VmKey(manifest.VmName) + "-boottest-" + id);
            var job = _catalog.StartJob("BootTest", manifest.VmName, _repository);
            job.CheckpointId = manifest.Id;
            var clock = Stopwatch.StartNew();
            ExportServerInfo? server = null;
            try
            {
                Directory.CreateDirectory(folder);
                // Whose test this is: a later one sweeps the folder (and its server) once this process is gone.
                File.WriteAllText(Path.Combine(folder, OwnerFileName), CurrentProcessId().ToString(System.Globalization.CultureInfo.InvariantCulture));
                _reporter.Progress("Boot test", $"{manifest.VmName}: serving checkpoint {manifest.Id}", 5);
                server = ExportServers.Start(new ExportServerRequest(_repository, manifest, "BootTest")
                {
                    DiskNames = manifest.Disks.Select(d => d.Name).ToList(),
                    OpenToOtherUsers = true,
                    FolderName = "boottest-" + id,
                });
                var overlays = manifest.Disks.Select(disk =>
                {
                    string overlay = Path.Combine(folder, disk.Name + ".qcow2");
                    var uri = server.Disks.Single(d => d.Name == disk.Name).Uri;
                    HostCommand.Run("qemu-img", "create", "-q", "-u", "-f", "qcow2", "-b", uri, "-F", "raw", overlay, disk.VirtualSize.ToString(System.Globalization.CultureInfo.InvariantCulture))
                        .EnsureSucceeded($"The overlay of disk {disk.Name} of '{manifest.VmName}'");
                    return new RegisteredDisk(disk.Name, overlay, DiskFormat.Qcow2);
                }).ToList();
                _reporter.Progress("Boot test", $"{manifest.VmName}: booting {result.CopyName}", 20);
                using (var copy = host.StartIsolated(new IsolatedBootRequest(manifest.Configuration!, overlays, result.CopyName, folder), _reporter))
                {
                    (bool passed, string reason) = Watch(copy, options, clock, cancellationToken);
                    result.Result = passed ? BootOutcome.Passed : BootOutcome.Failed;
                    result.Reason = reason;
                }
            }
            catch (Exception e)
            {
                Clean(server, folder);
                _catalog.FinishJob(job, e is OperationCanceledException ? JobResult.Cancelled : JobResult.Failed, e.Message);
                throw;
            }
            Clean(server, folder);
            result.Seconds = clock.Elapsed.TotalSeconds;
            _catalog.RecordBootTest(_repository.Id, manifest.Id, result.IsPassed, result.Reason, DateTime.UtcNow);
            _catalog.FinishJob(job, result.IsPassed ? JobResult.Succeeded : JobResult.Failed, result.IsPassed ? null : result.Reason,
                message: $"Boot test of checkpoint {manifest.Id} as '{result.CopyName}': {result.Result}: {result.Reason}");
            _reporter.Verbose($"Boot test of checkpoint {manifest.Id} of '{manifest.VmName}': {result.Result} ({result.Reason}).");
            return result;
        }

        /// <summary>Waits for the sign of life: the pattern on the console when there is one, else the agent's answer.</summary>
        private (bool, string) Watch(IIsolatedVm copy, BootTestOptions options, Stopwatch clock, CancellationToken cancellationToken)
        {
            var deadline = clock.Elapsed + options.Timeout;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (options.ConsolePattern is { } pattern)
                {
                    var match = pattern.Match(copy.ConsoleText());
                    if (match.Success) return (true, $"its console showed '{Shorten(match.Value)}' after {clock.Elapsed.TotalSeconds:0.0} s");
                }
                else if (copy.GuestAgentAnswers())
                {
                    return (true, $"its guest agent answered after {clock.Elapsed.TotalSeconds:0.0} s");
                }
                var condition = copy.Condition();
                if (condition.Kind != VmConditionKind.Running)
                    return (false, $"it stopped before it was up ({condition.Detail}) after {clock.Elapsed.TotalSeconds:0.0} s{LastLine(copy)}");
                if (clock.Elapsed > deadline)
                    return (false, (options.ConsolePattern is { } p
                        ? $"its console did not show '{p}' within {options.Timeout.TotalSeconds:0} s"
                        : $"its guest agent did not answer within {options.Timeout.TotalSeconds:0} s") + LastLine(copy));
                _reporter.Progress("Boot test", $"{copy.Name}: waiting for it to come up ({clock.Elapsed.TotalSeconds:0} s)",
                    20 + (int)(70 * Math.Min(1.0, clock.Elapsed.TotalSeconds / Math.Max(1.0, options.Timeout.TotalSeconds))));
                cancellationToken.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(250));
            }
        }

        private static string LastLine(IIsolatedVm copy)
        {
            var last = copy.ConsoleText().Split('\n').Select(l => l.Trim()).LastOrDefault(l => l.Length > 0);
            return last is null ? "; its console stayed empty" : $"; its console's last line: '{Shorten(last)}'";
        }

        private static string Shorten(string s) => s.Length <= 120 ? s : s.Substring(0, 117) + "...";

        private const string OwnerFileName = "owner.pid";
        private const string FolderMarker = "-boottest-";

        private static int CurrentProcessId()
        {
            using (var me = Process.GetCurrentProcess()) return me.Id;
        }

        /// <summary>
        /// Removes what boot tests of processes that are gone (killed, a host that went down) left: their overlay
        /// folders and their export servers. Their copies went with them: a boot-test copy is a transient domain that
        /// libvirt destroys when its connection closes. A folder whose files something still holds is left alone.
        /// </summary>
        internal static void SweepLeftovers(string workRoot, IJobReporter reporter)
        {
            if (!Directory.Exists(workRoot)) return;
            foreach (var folder in Directory.GetDirectories(workRoot, "*" + FolderMarker + "*"))
            {
                try
                {
                    var owner = Path.Combine(folder, OwnerFileName);
                    // A folder just made has no owner file yet: give it a minute before it counts as abandoned.
                    if (!File.Exists(owner) && DateTime.UtcNow - Directory.GetLastWriteTimeUtc(folder) < TimeSpan.FromMinutes(1)) continue;
                    if (File.Exists(owner) && int.TryParse(File.ReadAllText(owner).Trim(), out int pid) && Directory.Exists($"/proc/{pid}")) continue;
                    var files = Directory.GetFiles(folder);
                    if (FileUsers.Of(files).Values.Any(users => users.Count > 0)) continue;
                    string id = Path.GetFileName(folder).Substring(Path.GetFileName(folder).LastIndexOf(FolderMarker, StringComparison.Ordinal) + FolderMarker.Length);
                    foreach (var server in ExportServers.List().Where(s => Path.GetFileName(s.Folder) == "boottest-" + id))
                        ExportServers.Stop(server);
                    Directory.Delete(folder, recursive: true);
                    reporter.Verbose($"Removed {folder}, left by a boot test whose process is gone.");
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException || e is ExportServerException)
                {
                    reporter.Warning($"{folder}, left by an earlier boot test, could not be removed: {e.Message}");
                }
            }
        }

        private void Clean(ExportServerInfo? server, string folder)
        {
            if (server != null)
            {
                try { ExportServers.Stop(server); }
                catch (Exception e) when (!(e is OperationCanceledException)) { _reporter.Warning($"The export server {server.Folder} could not be stopped: {e.Message}"); }
            }
            try { if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true); }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException) { _reporter.Warning($"{folder} could not be removed: {e.Message}"); }
        }
    }
}
