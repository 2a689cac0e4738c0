using System.Collections.Concurrent;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Threading.Tasks;
using System.Threading;
using System;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Reporting;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>
    /// What every cmdlet shares: the repository and catalog parameters, Ctrl+C as a CancellationToken, progress
    /// from Core's worker threads shown on the pipeline thread, and exceptions turned into categorized errors.
    /// </summary>
    public abstract class VmCheckpointCmdlet : PSCmdlet
    {
        public const string RepositoryVariable = "VMCHECKPOINT_REPOSITORY";
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private CheckpointCatalog? _catalog;
        private readonly Dictionary<string, CheckpointRepository> _repositories = new Dictionary<string, CheckpointRepository>(StringComparer.Ordinal);
        private BlockingCollection<Action>? _pump;
        private int _pipelineThread = -1;

        /// <summary>The repository: a folder, a share, or s3://bucket/prefix; defaults to $env:VMCHECKPOINT_REPOSITORY.</summary>
        [Parameter(ValueFromPipelineByPropertyName = true)]
        [ValidateNotNullOrEmpty]
        public string? Repository { get; set; }

        /// <summary>The password of an encrypted repository; defaults to $env:VMCHECKPOINT_PASSWORD (or the key this session unlocked it with).</summary>
        [Parameter]
        [ValidateNotNull]
        public System.Security.SecureString? Password { get; set; }

        /// <summary>A file whose first line is the password of an encrypted repository; defaults to $env:VMCHECKPOINT_PASSWORD_FILE.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? PasswordFile { get; set; }

        /// <summary>The password given to this cmdlet, or null (Core then looks at the session's keys and the environment).</summary>
        protected Core.Security.RepositorySecret? GivenSecret()
        {
            try
            {
                return Core.Security.RepositorySecret.Choose(Password, PasswordFile is null ? null : ResolvePath(PasswordFile), useEnvironment: false);
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "Password", PasswordFile));
                throw; // not reached
            }
        }

        /// <summary>The LiteDB catalog file; defaults to $env:VMCHECKPOINT_CATALOG or the user's local application data.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public string? CatalogPath { get; set; }

        /// <summary>How long a process told to terminate waits for a running job to clean up (systemd waits 90 s by default).</summary>
        internal static readonly TimeSpan TerminationGrace = TimeSpan.FromSeconds(30);

        protected CancellationToken CancelToken => _stop.Token;

        protected override void StopProcessing() => _stop.Cancel();

        protected override void EndProcessing()
        {
            _catalog?.Dispose();
            _catalog = null;
        }

        /// <summary>Opens (and caches) the repository, resolving PowerShell paths; terminates with a clear error if absent.</summary>
        protected CheckpointRepository OpenRepository()
        {
            var given = Repository ?? Environment.GetEnvironmentVariable(RepositoryVariable);
            if (string.IsNullOrEmpty(given))
                ThrowTerminatingError(new ErrorRecord(new ArgumentException("No repository given: pass -Repository or set $env:VMCHECKPOINT_REPOSITORY."),
                    "RepositoryNotGiven", ErrorCategory.InvalidArgument, null));
            var path = ResolveRepository(given!);
            if (_repositories.TryGetValue(path, out var open)) return open;
            try
            {
                open = CheckpointRepository.Open(path, GivenSecret());
            }
            catch (Exception e)
            {
                ThrowTerminatingError(ToErrorRecord(e, "OpenRepository", path));
                throw; // not reached
            }
            _repositories[path] = open;
            return open;
        }

        protected CheckpointCatalog Catalog
        {
            get
            {
                if (_catalog != null) return _catalog;
                try
                {
                    _catalog = new CheckpointCatalog(CatalogPath != null ? ResolvePath(CatalogPath) : CheckpointCatalog.DefaultPath);
                }
                catch (Exception e)
                {
                    ThrowTerminatingError(ToErrorRecord(e, "OpenCatalog", CatalogPath));
                }
                return _catalog!;
            }
        }

        /// <summary>
        /// For Get- cmdlets: the repository brought up to date in the catalog, or null after a non-terminating error
        /// naming it (missing, unreachable, not a repository), so that -ErrorAction rules it as for any missing item.
        /// </summary>
        protected CheckpointRepository? TryOpenSynchronized()
        {
            var given = Repository ?? Environment.GetEnvironmentVariable(RepositoryVariable);
            if (string.IsNullOrEmpty(given)) return OpenSynchronized(); // no repository at all is a usage error: terminating
            var path = ResolveRepository(given!);
            if (!_repositories.ContainsKey(path))
            {
                try
                {
                    _repositories[path] = CheckpointRepository.Open(path, GivenSecret());
                }
                catch (Exception e) when (!(e is PipelineStoppedException))
                {
                    WriteError(ToErrorRecord(e, "OpenRepository", path));
                    return null;
                }
            }
            return OpenSynchronized();
        }

        /// <summary>Opens the repository and brings the catalog up to date with it.</summary>
        protected CheckpointRepository OpenSynchronized()
        {
            var repository = OpenRepository();
            var result = Catalog.Synchronize(repository, CancelToken);
            if (result.Added > 0 || result.Removed > 0)
                WriteVerbose($"Catalog {Catalog.Path}: indexed {result.Added} checkpoints, forgot {result.Removed} removed ones from {repository.Path}.");
            foreach (var problem in result.Unreadable) WriteWarning($"Unreadable checkpoint: {problem}");
            return repository;
        }

        protected string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

        /// <summary>A repository's location: an address (s3://bucket/prefix) as given, a path resolved as PowerShell paths are.</summary>
        internal static string ResolveRepository(SessionState session, string location) =>
            Core.Repository.Backends.RepositoryBackends.IsAddress(location) ? location : session.Path.GetUnresolvedProviderPathFromPSPath(location);

        protected string ResolveRepository(string location) => ResolveRepository(SessionState, location);

        /// <summary>
        /// Runs Core work on a worker thread while this (the pipeline) thread shows its progress, verbose and
        /// warning messages: cmdlet methods may only be called from the pipeline thread.
        /// </summary>
        protected T RunJob<T>(string activity, Func<IJobReporter, CancellationToken, T> work)
        {
            using var messages = new BlockingCollection<Action>();
            var reporter = new PipelineReporter(messages, this, activity);
            _pipelineThread = Thread.CurrentThread.ManagedThreadId;
            _pump = messages;
            var task = Task.Factory.StartNew(() =>
            {
                try { return work(reporter, CancelToken); }
                finally { messages.CompleteAdding(); }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            // SIGTERM (systemctl stop, docker stop, kill) would end the process where it stands: pwsh does not stop the
            // pipeline. The job is stopped as Ctrl+C stops it, and the process waits a while for its clean-up (a libvirt
            // backup job, a bitmap, a temporary file) before it goes.
            using var terminate = TerminationSignal.Register(() =>
            {
                _stop.Cancel();
                try { task.Wait(TerminationGrace); }
                catch (AggregateException) { }
            });
            try
            {
                foreach (var message in messages.GetConsumingEnumerable()) message();
            }
            finally
            {
                _pump = null;
            }
            var done = new ProgressRecord(reporter.ActivityId, activity, "Done") { RecordType = ProgressRecordType.Completed };
            WriteProgress(done);
            try
            {
                return task.GetAwaiter().GetResult();
            }
            catch (OperationCanceledException) when (CancelToken.IsCancellationRequested)
            {
                throw new PipelineStoppedException();
            }
        }

        /// <summary>
        /// Runs <paramref name="work"/> on the pipeline thread and returns its result: from RunJob's worker, by way of
        /// the message pump (the runspace only runs commands on its own thread); from the pipeline thread, at once.
        /// </summary>
        protected T OnPipelineThread<T>(Func<T> work)
        {
            var pump = _pump;
            if (pump is null || Thread.CurrentThread.ManagedThreadId == _pipelineThread) return work();
            T result = default!;
            Exception? error = null;
            using var done = new ManualResetEventSlim(false);
            pump.Add(() =>
            {
                try { result = work(); }
                catch (Exception e) { error = e; }
                finally { done.Set(); }
            });
            if (WaitHandle.WaitAny(new[] { done.WaitHandle, CancelToken.WaitHandle }) != 0 && !done.IsSet) throw new OperationCanceledException(CancelToken);
            if (error != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(error).Throw();
            return result;
        }

        /// <summary>Writes an object to the pipeline from RunJob's worker (or the pipeline thread).</summary>
        protected void Emit(object value) => OnPipelineThread(() => { WriteObject(value); return true; });

        /// <summary>
        /// Connects to hypervisor hosts: libvirt by URI, or Hyper-V by computer name, whose module commands and CIM calls
        /// then run in this cmdlet's runspace.
        /// </summary>
        protected Core.Hypervisors.HypervisorConnector Connector => new Core.Hypervisors.HypervisorConnector(location =>
        {
            var host = new HyperV.HyperVRunspaceHost((script, args) => OnPipelineThread(() =>
                InvokeCommand.InvokeScript(script, true, System.Management.Automation.Runspaces.PipelineResultTypes.None, null, args)), location, HostCredential);
            return new Core.Hypervisors.HyperV.HyperVHypervisor(host, host.HasCim ? host : null);
        });

        /// <summary>The account for remote Hyper-V hosts (a cmdlet's -Credential); null: the current user's.</summary>
        protected virtual PSCredential? HostCredential => null;

        /// <summary>Where the VMs are: the libvirt URI, or each Hyper-V computer named (null: this one).</summary>
        protected static IReadOnlyList<string?> HostLocationsOf(string hypervisor, string connectionUri, string[]? computerNames) =>
            computerNames is { Length: > 0 } && HypervisorNames.IsHyperV(hypervisor)
                ? computerNames.Distinct(StringComparer.OrdinalIgnoreCase).Select(c => HypervisorNames.HostLocation(hypervisor, connectionUri, c)).ToList()
                : new List<string?> { HypervisorNames.HostLocation(hypervisor, connectionUri, null) };

        /// <summary>Connects to a hypervisor host (see <see cref="Connector"/>).</summary>
        protected Core.Hypervisors.IHypervisor ConnectHypervisor(string hypervisor, string? location) => Connector.Connect(hypervisor, location);

        /// <summary>
        /// Maps Core's exceptions to categorized error records. The ErrorId is "&lt;operation&gt;.&lt;failure&gt;", both
        /// literal: scripts may match on them across versions (FullyQualifiedErrorId).
        /// </summary>
        /// <summary>
        /// The checkpoint a cmdlet works on: <paramref name="id"/>, or the newest of <paramref name="vmName"/>. One that is
        /// not there, or an id prefix that several match, is a non-terminating error (null), so a pipeline goes on.
        /// </summary>
        protected (CheckpointInfo Info, CheckpointFile File)? SelectCheckpoint(CheckpointRepository repository, string vmName, string? id, string operation)
        {
            try
            {
                return CheckpointSelector.Select(Catalog, repository, vmName, id);
            }
            catch (Exception e) when (e is CheckpointNotFoundException || e is AmbiguousCheckpointIdException)
            {
                WriteError(ToErrorRecord(e, operation, id ?? vmName));
                return null;
            }
        }

        internal static ErrorRecord ToErrorRecord(Exception e, string operation, object? target)
        {
            var (category, failure) = Classify(e);
            var record = new ErrorRecord(e, operation + "." + failure, category, target);
            if (e is IOException io && IsDiskFull(io))
                record.ErrorDetails = new ErrorDetails($"Not enough space: {e.Message}") { RecommendedAction = "Free space on the target or the repository's share, then run again; nothing partial was kept." };
            return record;
        }

        /// <summary>The category and the literal failure id of an exception.</summary>
        internal static (ErrorCategory Category, string Failure) Classify(Exception e) => e switch
        {
            Core.Security.RepositoryPasswordException _ => (ErrorCategory.SecurityError, "RepositoryPassword"),
            RepositoryNotFoundException r when r.Unreachable => (ErrorCategory.ResourceUnavailable, "RepositoryUnreachable"),
            RepositoryNotFoundException _ => (ErrorCategory.ObjectNotFound, "RepositoryNotFound"),
            DiskInUseException _ => (ErrorCategory.ResourceBusy, "DiskInUse"),
            ImageFormatException _ => (ErrorCategory.InvalidData, "UnsupportedImageFormat"),
            CorruptImageException _ => (ErrorCategory.InvalidData, "CorruptImage"),
            BlockDamagedException _ => (ErrorCategory.InvalidData, "BlockDamaged"),
            Core.Exports.ExportServerException _ => (ErrorCategory.ResourceUnavailable, "ExportServer"),
            Core.Exports.HostCommandException _ => (ErrorCategory.InvalidOperation, "HostCommand"),
            InvalidDataException _ => (ErrorCategory.InvalidData, "InvalidData"),
            TargetExistsException _ => (ErrorCategory.ResourceExists, "TargetExists"),
            RepositoryLockedException _ => (ErrorCategory.ResourceBusy, "RepositoryLocked"),
            CheckpointNotFoundException _ => (ErrorCategory.ObjectNotFound, "CheckpointNotFound"),
            AmbiguousCheckpointIdException _ => (ErrorCategory.InvalidArgument, "AmbiguousId"),
            Core.Hypervisors.VmNotFoundException _ => (ErrorCategory.ObjectNotFound, "VmNotFound"),
            Core.Hypervisors.VmBusyException _ => (ErrorCategory.ResourceBusy, "VmBusy"),
            Core.Hypervisors.HypervisorUnavailableException _ => (ErrorCategory.ResourceUnavailable, "HypervisorUnavailable"),
            Core.Hypervisors.HyperV.HyperVException _ => (ErrorCategory.InvalidOperation, "HyperV"),
            Core.Hypervisors.Libvirt.LibvirtException lv when lv.Code == Core.Hypervisors.Libvirt.LibvirtNative.ErrNoDomain => (ErrorCategory.ObjectNotFound, "VmNotFound"),
            Core.Hypervisors.Libvirt.LibvirtException _ => (ErrorCategory.InvalidOperation, "Libvirt"),
            FileNotFoundException _ => (ErrorCategory.ObjectNotFound, "FileNotFound"),
            DirectoryNotFoundException _ => (ErrorCategory.ObjectNotFound, "DirectoryNotFound"),
            KeyNotFoundException _ => (ErrorCategory.ObjectNotFound, "NotFound"),
            ItemNotFoundException _ => (ErrorCategory.ObjectNotFound, "NotFound"),
            UnauthorizedAccessException _ => (ErrorCategory.PermissionDenied, "PermissionDenied"),
            OperationCanceledException _ => (ErrorCategory.OperationStopped, "Stopped"),
            NotSupportedException _ => (ErrorCategory.NotImplemented, "NotSupported"),
            ArgumentException _ => (ErrorCategory.InvalidArgument, "InvalidArgument"),
            InvalidOperationException _ => (ErrorCategory.InvalidOperation, "InvalidOperation"),
            IOException io when IsDiskFull(io) => (ErrorCategory.WriteError, "DiskFull"),
            IOException _ => (ErrorCategory.ResourceUnavailable, "IOError"),
            _ => (ErrorCategory.NotSpecified, "Failed"),
        };

        private static bool IsDiskFull(IOException e)
        {
            int code = e.HResult & 0xFFFF;
            return code == 0x70 || code == 0x27 || code == 28 /* ENOSPC */ || e.Message.IndexOf("No space left", StringComparison.OrdinalIgnoreCase) >= 0;
        }

        /// <summary>Warnings and verbose messages written at once, for short Core calls made on the pipeline thread.</summary>
        protected sealed class WarningReporter : IJobReporter
        {
            private readonly Cmdlet _cmdlet;
            public WarningReporter(Cmdlet cmdlet) { _cmdlet = cmdlet; }
            public void Progress(string activity, string status, int percent) { }
            public void Verbose(string message) => _cmdlet.WriteVerbose(message);
            public void Warning(string message) => _cmdlet.WriteWarning(message);
        }

        private sealed class PipelineReporter : IJobReporter
        {
            private readonly BlockingCollection<Action> _messages;
            private readonly Cmdlet _cmdlet;
            private readonly string _defaultActivity;
            private long _lastProgressTicks;

            public PipelineReporter(BlockingCollection<Action> messages, Cmdlet cmdlet, string activity)
            {
                _messages = messages;
                _cmdlet = cmdlet;
                _defaultActivity = activity;
                ActivityId = Math.Abs(activity.GetHashCode() % 100000) + 1;
            }

            public int ActivityId { get; }

            public void Progress(string activity, string status, int percent)
            {
                // At most ten updates a second, but always the first and the last.
                long now = DateTime.UtcNow.Ticks;
                if (percent > 0 && percent < 100 && now - Interlocked.Read(ref _lastProgressTicks) < TimeSpan.TicksPerMillisecond * 100) return;
                Interlocked.Exchange(ref _lastProgressTicks, now);
                var record = new ProgressRecord(ActivityId, string.IsNullOrEmpty(activity) ? _defaultActivity : activity, string.IsNullOrEmpty(status) ? "..." : status)
                {
                    PercentComplete = percent < 0 ? -1 : Math.Min(100, percent),
                };
                TryAdd(() => _cmdlet.WriteProgress(record));
            }

            public void Verbose(string message) => TryAdd(() => _cmdlet.WriteVerbose(message));

            public void Warning(string message) => TryAdd(() => _cmdlet.WriteWarning(message));

            private void TryAdd(Action a)
            {
                try { _messages.Add(a); } catch (InvalidOperationException) { }
            }
        }
    }
}
