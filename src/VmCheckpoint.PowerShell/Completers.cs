using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Language;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.PowerShell
{
    /// <summary>Shared by the completers: the catalog's view of the repository the command line names.</summary>
    internal static class CompletionSource
    {
        public static List<CheckpointInfo> Checkpoints(IDictionary bound)
        {
            try
            {
                var path = bound["Repository"] as string ?? Environment.GetEnvironmentVariable(VmCheckpointCmdlet.RepositoryVariable);
                if (string.IsNullOrEmpty(path)) return new List<CheckpointInfo>();
                var repository = CheckpointRepository.Open(path!);
                var catalogPath = bound["CatalogPath"] as string ?? CheckpointCatalog.DefaultPath;
                using var catalog = new CheckpointCatalog(catalogPath);
                catalog.Synchronize(repository);
                return catalog.GetCheckpoints(repository.Id);
            }
            catch (Exception)
            {
                return new List<CheckpointInfo>(); // completion never fails loudly
            }
        }

        public static string Quote(string s) =>
            s.IndexOfAny(new[] { ' ', '\'', '"', '$', '`', '(', ')', '{', '}', ';', ',', '&', '|', '@', '#' }) >= 0
                ? "'" + s.Replace("'", "''") + "'"
                : s;
    }

    /// <summary>Completes VM names from the catalog of the repository given on the command line.</summary>
    public sealed class VmNameCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            return CompletionSource.Checkpoints(fakeBoundParameters)
                .Select(c => c.VmName).Distinct(StringComparer.Ordinal)
                .Where(n => n.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                .OrderBy(n => n, StringComparer.OrdinalIgnoreCase)
                .Select(n => new CompletionResult(CompletionSource.Quote(n), n, CompletionResultType.ParameterValue, n));
        }
    }

    /// <summary>Completes checkpoint ids (of the VM given by -Name, if any), newest first.</summary>
    public sealed class CheckpointIdCompleter : IArgumentCompleter
    {
        public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete,
            CommandAst commandAst, IDictionary fakeBoundParameters)
        {
            var prefix = (wordToComplete ?? "").Trim('\'', '"');
            var vm = fakeBoundParameters["Name"] as string;
            return CompletionSource.Checkpoints(fakeBoundParameters)
                .Where(c => (vm is null || string.Equals(c.VmName, vm, StringComparison.OrdinalIgnoreCase)) && c.Id.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
                .Select(c => new CompletionResult(c.Id, c.Id, CompletionResultType.ParameterValue, $"{c.VmName} {c.Time.ToLocalTime():g}"));
        }
    }
}
