using System;
using System.Collections.Generic;
using System.Linq;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Catalog
{
    /// <summary>No checkpoint matches what was asked for.</summary>
    public sealed class CheckpointNotFoundException : KeyNotFoundException
    {
        public CheckpointNotFoundException(string message, string target) : base(message)
        {
            Target = target;
        }

        /// <summary>The id or VM name that matched nothing.</summary>
        public string Target { get; }
    }

    /// <summary>An id prefix matches more than one checkpoint.</summary>
    public sealed class AmbiguousCheckpointIdException : ArgumentException
    {
        public AmbiguousCheckpointIdException(string message, string id) : base(message)
        {
            Id = id;
        }

        public string Id { get; }
    }

    /// <summary>
    /// Picks the checkpoint a user means: a VM's latest when no id is given, else the one whose id is the id given or
    /// begins with it (<see cref="CheckpointIds"/>); ambiguous and unknown ids are errors that say what to give instead.
    /// </summary>
    public static class CheckpointSelector
    {
        /// <summary>The checkpoint of <paramref name="vmName"/> (the latest when <paramref name="id"/> is null), as listed in the repository.</summary>
        public static (CheckpointInfo Info, CheckpointFile File) Select(CheckpointCatalog catalog, CheckpointRepository repository, string vmName, string? id)
        {
            var checkpoints = catalog.GetCheckpoints(repository.Id, c => string.Equals(c.VmName, vmName, StringComparison.Ordinal));
            var matches = id is null ? checkpoints.Take(1).ToList() : CheckpointIds.Match(checkpoints, c => c.Id, id);
            if (matches.Count > 1)
                throw new AmbiguousCheckpointIdException($"'{id}' matches {matches.Count} checkpoints of '{vmName}' ({string.Join(", ", matches.Take(5).Select(m => m.Id))}); give more of the id.", id!);
            var chosen = matches.FirstOrDefault();
            if (chosen is null)
            {
                throw new CheckpointNotFoundException(id is null
                    ? $"VM '{vmName}' has no checkpoints in {repository.Path}. Get-CheckpointedVm lists the VMs it holds."
                    : $"VM '{vmName}' has no checkpoint '{id}' in {repository.Path}. Get-VmCheckpoint -Name '{vmName}' lists its checkpoints.", id ?? vmName);
            }
            var file = repository.FindCheckpoint(chosen.Id)
                ?? throw new CheckpointNotFoundException($"Checkpoint {chosen.Id} of '{vmName}' was removed meanwhile.", chosen.Id);
            return (chosen, file);
        }

        /// <summary>The checkpoint whose id is, or begins with, <paramref name="id"/>, of any VM.</summary>
        public static CheckpointFile Find(CheckpointRepository repository, string id)
        {
            CheckpointFile? file;
            try
            {
                file = repository.FindCheckpoint(id);
            }
            catch (ArgumentException e) when (!(e is AmbiguousCheckpointIdException))
            {
                throw new AmbiguousCheckpointIdException(e.Message, id);
            }
            return file ?? throw new CheckpointNotFoundException($"No checkpoint '{id}' in {repository.Path}. Get-VmCheckpoint lists them.", id);
        }
    }
}
