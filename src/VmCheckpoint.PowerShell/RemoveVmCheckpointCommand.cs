using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Removes checkpoints by id (or pipeline) or by retention policy, then reclaims unused blocks.</summary>
    [Cmdlet(VerbsCommon.Remove, "VmCheckpoint", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = ByIdSet)]
    [OutputType(typeof(RemoveResult))]
    public sealed class RemoveVmCheckpointCommand : VmCheckpointCmdlet
    {
        private const string ByIdSet = "ById";
        private const string ByPolicySet = "ByPolicy";

        [Parameter(Mandatory = true, ParameterSetName = ByIdSet, ValueFromPipelineByPropertyName = true)]
        [ArgumentCompleter(typeof(CheckpointIdCompleter))]
        [ValidateNotNullOrEmpty]
        public string[] Id { get; set; } = new string[0];

        /// <summary>With a policy: the VMs it applies to (wildcards); all by default.</summary>
        [Parameter(ParameterSetName = ByPolicySet, Position = 0)]
        [Alias("VmName")]
        [SupportsWildcards]
        [ArgumentCompleter(typeof(VmNameCompleter))]
        public string[] Name { get; set; } = { "*" };

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepLast { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepDaily { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepWeekly { get; set; }

        [Parameter(ParameterSetName = ByPolicySet)]
        [ValidateRange(0, int.MaxValue)]
        public int KeepMonthly { get; set; }

        /// <summary>Only remove the manifests; leave reclaiming unused blocks to a later run.</summary>
        [Parameter]
        public SwitchParameter NoReclaim { get; set; }

        /// <summary>Seconds to wait for checkpoints running in other processes before deferring the reclaim.</summary>
        [Parameter]
        [ValidateRange(0, 86400)]
        public int LockTimeout { get; set; } = 60;

        private readonly List<string> _ids = new List<string>();
        private CheckpointRepository? _repository;

        protected override void BeginProcessing()
        {
            if (ParameterSetName == ByPolicySet && KeepLast + KeepDaily + KeepWeekly + KeepMonthly == 0)
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("Give a retention policy: at least one of -KeepLast, -KeepDaily, -KeepWeekly, -KeepMonthly above zero."),
                    "NoPolicy", ErrorCategory.InvalidArgument, null));
        }

        protected override void ProcessRecord()
        {
            _repository ??= OpenSynchronized();
            if (ParameterSetName == ByIdSet) _ids.AddRange(Id);
        }

        protected override void EndProcessing()
        {
            try
            {
                var repository = _repository ?? OpenSynchronized();
                var job = new RemoveJob(repository, Catalog) { LockWait = TimeSpan.FromSeconds(LockTimeout) };
                List<CheckpointFile> doomed;
                if (ParameterSetName == ByPolicySet)
                {
                    var patterns = Name.Select(n => new VmNamePattern(n)).ToList();
                    var policy = new RetentionPolicy { KeepLast = KeepLast, KeepDaily = KeepDaily, KeepWeekly = KeepWeekly, KeepMonthly = KeepMonthly };
                    doomed = job.SelectByPolicy(policy, vm => patterns.Any(p => p.IsMatch(vm)));
                }
                else
                {
                    doomed = new List<CheckpointFile>();
                    foreach (var id in _ids.Distinct(StringComparer.OrdinalIgnoreCase))
                    {
                        try { doomed.Add(CheckpointSelector.Find(repository, id)); }
                        catch (Exception e) when (e is CheckpointNotFoundException || e is AmbiguousCheckpointIdException) { WriteError(ToErrorRecord(e, "Remove", id)); }
                    }
                }
                var confirmed = doomed.Where(f => ShouldProcess($"checkpoint {f.Id} of {f.Time:u}", "Remove")).ToList();
                if (confirmed.Count == 0 && (doomed.Count > 0 || NoReclaim)) return;
                if (doomed.Count == 0 && !ShouldProcess(repository.Path, "Reclaim blocks no checkpoint uses")) return;
                var result = RunJob("Removing checkpoints", (reporter, token) =>
                {
                    job.Reporter = reporter;
                    return job.Run(confirmed, reclaim: !NoReclaim, token);
                });
                WriteObject(result);
            }
            catch (PipelineStoppedException)
            {
                throw;
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Remove", _repository?.Path));
            }
            finally
            {
                base.EndProcessing();
            }
        }
    }
}
