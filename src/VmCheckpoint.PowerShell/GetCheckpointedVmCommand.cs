using System.Management.Automation;
using VmCheckpoint.Core.Catalog;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Lists the VMs that have checkpoints in a repository.</summary>
    [Cmdlet(VerbsCommon.Get, "CheckpointedVm")]
    [OutputType(typeof(CheckpointedVmInfo))]
    public sealed class GetCheckpointedVmCommand : VmCheckpointCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = { "*" };

        protected override void ProcessRecord()
        {
            var repository = TryOpenSynchronized();
            if (repository is null) return;
            foreach (var name in Name)
            {
                var pattern = new WildcardPattern(name, WildcardOptions.IgnoreCase);
                var vms = Catalog.GetVms(repository.Id, pattern.IsMatch);
                if (vms.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(name))
                    WriteError(new ErrorRecord(new ItemNotFoundException($"No VM named '{name}' has checkpoints in {repository.Path}."),
                        "VmNotFound", ErrorCategory.ObjectNotFound, name));
                foreach (var vm in vms) WriteObject(vm);
            }
        }
    }
}
