using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Checks checkpoints' manifests and blocks; -ReadData re-hashes every block.</summary>
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

        private readonly List<CheckpointFile> _selected = new List<CheckpointFile>();
        private CheckpointRepository? _repository;

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
                var results = RunJob(ReadData ? "Verifying checkpoints (reading all data)" : "Verifying checkpoints",
                    (reporter, token) => new VerifyJob(repository, Catalog, reporter).Run(_selected, ReadData, token).ToList());
                foreach (var r in results.OrderByDescending(r => r.Time))
                {
                    if (r.Status != VerificationStatus.Healthy)
                        WriteWarning($"Checkpoint {r.Id} of '{r.VmName}' is damaged: {string.Join("; ", r.Problems.Take(3))}");
                    WriteObject(r);
                }
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
    }
}
