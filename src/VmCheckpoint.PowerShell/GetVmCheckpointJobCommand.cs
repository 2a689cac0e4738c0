using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Reads the catalog's job log: every checkpoint, restore, verification and removal run, newest first.</summary>
    [Cmdlet(VerbsCommon.Get, "VmCheckpointJob")]
    [OutputType(typeof(JobRecord))]
    public sealed class GetVmCheckpointJobCommand : VmCheckpointCmdlet
    {
        [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
        [Alias("VmName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = { "*" };

        [Parameter]
        public JobResult? Result { get; set; }

        [Parameter]
        [ValidateRange(1, int.MaxValue)]
        public int Last { get; set; } = int.MaxValue;

        protected override void BeginProcessing()
        {
            // Instant restores still copying: their bytes done brought up to date, and one interrupted finished.
            if (Core.Jobs.InstantRestoreJob.Pending().Count > 0)
            {
                foreach (var done in Core.Jobs.InstantRestoreJob.Finish(Catalog, ConnectHypervisor, new WarningReporter(this), secret: GivenSecret()))
                    WriteVerbose($"The data of '{done.VmName}' is home: it runs from {done.Destination} only.");
            }
        }

        protected override void ProcessRecord()
        {
            var patterns = Name.Select(n => new Core.Hypervisors.VmNamePattern(n)).ToList();
            string? repositoryId = Repository != null || System.Environment.GetEnvironmentVariable(RepositoryVariable) != null ? OpenRepository().Id : null;
            foreach (var job in Catalog.GetJobs(j => patterns.Any(p => p.IsMatch(j.VmName ?? "")) && (Result is null || j.Outcome == Result) &&
                                                     (repositoryId is null || j.RepositoryId == repositoryId), Last))
                WriteObject(job);
        }
    }
}
