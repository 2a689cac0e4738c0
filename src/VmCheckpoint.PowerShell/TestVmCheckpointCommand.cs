using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Text.RegularExpressions;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// Checks checkpoints' manifests and blocks, and the repository's index files; -ReadData reads every byte of the
    /// packs (all of them when every checkpoint is checked). Damage outside the checkpoints (an index file, a pack, the
    /// configuration) is a non-terminating error per object, ErrorId Verify.DamagedIndex, Verify.DamagedPack or
    /// Verify.DamagedConfiguration. -Boot then boots each healthy checkpoint as an isolated copy (BootTestJob) and
    /// adds its outcome to the result (Boot, BootReason) and to the catalog.
    /// </summary>
    [Cmdlet(VerbsDiagnostic.Test, "VmCheckpoint")]
    [OutputType(typeof(VerificationResult))]
    public sealed class TestVmCheckpointCommand : VmCheckpointCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = { "*" };

        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ArgumentCompleter(typeof(CheckpointIdCompleter))]
        public string[]? Id { get; set; }

        /// <summary>Read, decompress and re-hash every block, not only check that it is there.</summary>
        [Parameter]
        public SwitchParameter ReadData { get; set; }

        /// <summary>Boot each healthy checkpoint as an isolated copy and wait for a sign of life.</summary>
        [Parameter]
        public SwitchParameter Boot { get; set; }

        /// <summary>A regular expression the copy's serial console must show; without it, its guest agent must answer.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? ConsolePattern { get; set; }

        /// <summary>How long a copy may take to show its sign of life.</summary>
        [Parameter]
        public TimeSpan BootTimeout { get; set; } = TimeSpan.FromMinutes(5);

        /// <summary>The libvirt host that boots the copies; qemu:///system by default.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string ConnectionUri { get; set; } = Core.Hypervisors.Libvirt.LibvirtConnection.DefaultUri;

        private readonly List<CheckpointFile> _selected = new List<CheckpointFile>();
        private CheckpointRepository? _repository;

        protected override void BeginProcessing()
        {
            if (!Boot && (ConsolePattern != null || MyInvocation.BoundParameters.ContainsKey(nameof(BootTimeout))))
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("-ConsolePattern and -BootTimeout describe a boot test: add -Boot."), "BootTest.NeedsBoot", ErrorCategory.InvalidArgument, null));
            if (BootTimeout < TimeSpan.FromSeconds(1))
                ThrowTerminatingError(new ErrorRecord(new ArgumentException($"-BootTimeout {BootTimeout} is shorter than a second: give a time span such as 00:02:00 or (New-TimeSpan -Minutes 2)."), "BootTest.Timeout", ErrorCategory.InvalidArgument, BootTimeout));
            if (ConsolePattern != null)
            {
                try { _pattern = new Regex(ConsolePattern, RegexOptions.Multiline); }
                catch (ArgumentException e) { ThrowTerminatingError(new ErrorRecord(e, "BootTest.Pattern", ErrorCategory.InvalidArgument, ConsolePattern)); }
            }
        }

        private Regex? _pattern;

        protected override void ProcessRecord()
        {
            var repository = _repository = OpenSynchronized();
            var patterns = Name.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            var named = Catalog.GetCheckpoints(repository.Id, c => patterns.Any(p => p.IsMatch(c.VmName)));
            var ids = (Id is null ? named : Id.SelectMany(i => CheckpointIds.Match(named, c => c.Id, i))).Select(c => c.Id);
            var files = repository.ListCheckpoints().ToDictionary(f => f.Id);
            foreach (var id in ids)
            {
                if (files.TryGetValue(id, out var f) && !_selected.Contains(f)) _selected.Add(f);
            }
            // Manifests the catalog could not index are damaged: check them too when no filter excludes them.
            if (Id is null && Name.All(n => n == "*"))
            {
                foreach (var f in files.Values.Where(f => !_selected.Contains(f))) _selected.Add(f);
            }
            if (_selected.Count == 0 && Id != null)
                WriteError(new ErrorRecord(new ItemNotFoundException($"No checkpoint '{string.Join("', '", Id)}' in {repository.Path}."), "CheckpointNotFound", ErrorCategory.ObjectNotFound, Id));
        }

        protected override void EndProcessing()
        {
            try
            {
                if (_repository is null || _selected.Count == 0) return;
                var repository = _repository;
                var report = RunJob(ReadData ? "Verifying checkpoints (reading all data)" : "Verifying checkpoints",
                    (reporter, token) => new VerifyJob(repository, Catalog, reporter).Verify(_selected, ReadData, token));
                foreach (var r in report.Checkpoints.OrderByDescending(r => r.Time))
                {
                    if (r.State != VerificationStatus.Healthy)
                        WriteWarning($"Checkpoint {r.Id} of '{r.VmName}' is damaged: {string.Join("; ", r.Problems.Take(3))}");
                    var output = PSObject.AsPSObject(r);
                    var (boot, reason) = Boot ? BootTest(repository, r) : (null, null);
                    output.Properties.Add(new PSNoteProperty("Boot", boot));
                    output.Properties.Add(new PSNoteProperty("BootReason", reason));
                    WriteObject(output);
                }
                foreach (var note in report.Notes) WriteWarning(note);
                foreach (var problem in report.Problems) WriteError(ToErrorRecord(problem));
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Verify", _repository?.Path));
            }
            finally
            {
                base.EndProcessing();
            }
        }

        /// <summary>Boots one checkpoint (a damaged one is not booted); returns Passed or Failed and why, or null when it could not be tested.</summary>
        private (string?, string?) BootTest(CheckpointRepository repository, VerificationResult verified)
        {
            if (verified.State != VerificationStatus.Healthy) return (null, "Not booted: the checkpoint is damaged.");
            var info = Catalog.GetCheckpoints(repository.Id, c => c.Id == verified.Id).FirstOrDefault();
            var file = repository.FindCheckpoint(verified.Id);
            if (info is null || file is null) return (null, "Not booted: the checkpoint is not in the catalog.");
            try
            {
                string hypervisor = Core.Hypervisors.HypervisorNames.Canonical(info.Hypervisor);
                string? location = Core.Hypervisors.HypervisorNames.HostLocation(hypervisor, ConnectionUri, null);
                var options = new BootTestOptions { ConsolePattern = _pattern, Timeout = BootTimeout };
                var result = RunJob($"Boot test of {verified.VmName}", (reporter, token) =>
                {
                    using var host = ConnectHypervisor(hypervisor, location);
                    return new BootTestJob(repository, Catalog, host, reporter).Run(file, options, token);
                });
                if (!result.IsPassed) WriteWarning($"Checkpoint {verified.Id} of '{verified.VmName}' failed its boot test: {result.Reason}");
                return (result.Result, result.Reason);
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                WriteError(ToErrorRecord(e, "BootTest", verified.Id));
                return (null, "Not booted: " + e.Message);
            }
        }

        private static ErrorRecord ToErrorRecord(RepositoryProblem problem)
        {
            var record = new ErrorRecord(new System.IO.InvalidDataException($"{problem.Path}: {problem.Message}"),
                "Verify.Damaged" + problem.Kind, ErrorCategory.InvalidData, problem.Path);
            record.ErrorDetails = new ErrorDetails($"{problem.Path}: {problem.Message}")
            {
                RecommendedAction = problem.ObjectKind switch
                {
                    RepositoryObjectKind.Index => "Run Repair-VmCheckpointRepository: it rewrites the index from the packs.",
                    RepositoryObjectKind.Pack => "Run Repair-VmCheckpointRepository, then Test-VmCheckpoint -ReadData again to see which checkpoints the pack's damage reaches.",
                    _ => "Restore the configuration file from a copy of the repository: every command refuses it as it is.",
                },
            };
            return record;
        }
    }
}
