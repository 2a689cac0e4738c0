using System;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Lists checkpoints, newest first.</summary>
    [Cmdlet(VerbsCommon.Get, "VmCheckpoint")]
    [OutputType(typeof(CheckpointInfo))]
    public sealed class GetVmCheckpointCommand : VmCheckpointCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = { "*" };

        /// <summary>Checkpoint ids (or unique prefixes of at least 4 characters).</summary>
        // Not bound from the pipeline: a Get-VM object's Id is the VM's GUID, never a checkpoint's id.
        [Parameter]
        [ArgumentCompleter(typeof(CheckpointIdCompleter))]
        public string[]? Id { get; set; }

        /// <summary>Only the newest checkpoint of each VM.</summary>
        [Parameter]
        public SwitchParameter Latest { get; set; }

        protected override void ProcessRecord()
        {
            var repository = TryOpenSynchronized();
            if (repository is null) return;
            var patterns = Name.Select(n => new WildcardPattern(n, WildcardOptions.IgnoreCase)).ToList();
            var list = Catalog.GetCheckpoints(repository.Id, c => patterns.Any(p => p.IsMatch(c.VmName)));
            if (Id != null)
            {
                foreach (var id in Id)
                {
                    var match = CheckpointIds.Match(list, c => c.Id, id);
                    if (match.Count == 0)
                        WriteError(new ErrorRecord(new ItemNotFoundException($"No checkpoint '{id}' in {repository.Path}."), "CheckpointNotFound", ErrorCategory.ObjectNotFound, id));
                    foreach (var c in match) WriteObject(c);
                }
                return;
            }
            if (Latest) list = list.GroupBy(c => c.VmName).Select(g => g.First()).ToList();
            // One error per name that matched nothing, naming it: -ErrorAction and $Error see each.
            foreach (var name in Name.Where(n => !WildcardPattern.ContainsWildcardCharacters(n)))
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                if (!list.Any(c => pattern.IsMatch(c.VmName)))
                    WriteError(new ErrorRecord(new ItemNotFoundException($"No checkpoints of '{name}' in {repository.Path}. Get-CheckpointedVm lists the VMs that have some."),
                        "VmNotFound", ErrorCategory.ObjectNotFound, name));
            }
            foreach (var c in list) WriteObject(c);
        }
    }
}
