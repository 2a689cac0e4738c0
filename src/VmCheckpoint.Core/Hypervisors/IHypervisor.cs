using System.Collections.Generic;
using System;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>What a checkpoint run asks of the hypervisor.</summary>
    public sealed class CheckpointPlan
    {
        /// <summary>The change-tracking reference of the VM's latest checkpoint in the repository, if any.</summary>
        public string? ParentTrackingId { get; set; }
        /// <summary>Take the memory and device state too, consistent with the disks.</summary>
        public bool IncludeMemory { get; set; }
        /// <summary>Read every allocated block, ignoring change tracking (blocks are still deduplicated by hash).</summary>
        public bool Full { get; set; }
        /// <summary>The granularity changed ranges are rounded to (the repository's block size).</summary>
        public int BlockSize { get; set; } = 1 << 20;
        /// <summary>
        /// The file each disk of the latest checkpoint was read from, by disk name. A disk whose file is another one now
        /// (disks swapped or replaced in the VM's configuration) carries bitmaps that describe another disk's history.
        /// </summary>
        public IReadOnlyDictionary<string, string> ParentDiskFiles { get; set; } = new Dictionary<string, string>();

        /// <summary>True when the disk's changes since the parent can be taken from tracking on <paramref name="file"/>.</summary>
        public bool SameFileAsParent(string diskName, string? file) =>
            file != null && ParentDiskFiles.TryGetValue(diskName, out var before) && string.Equals(before, file, StringComparison.Ordinal);
    }

    /// <summary>
    /// A point-in-time view of one VM, opened by <see cref="ICheckpointSource.BeginCheckpoint"/> (open: every disk is
    /// validated before anything is written), with each disk's ranges changed since the parent (<see cref="DiskSource.ChangedExtents"/>).
    /// <see cref="Seal"/> ends the reading once every block is stored; <see cref="Commit"/> once the manifest is written
    /// (the new change-tracking reference becomes the next parent); disposing without commit abandons it: change
    /// tracking is left as it was, so the next run is incremental from the last stored checkpoint.
    /// </summary>
    public interface IVmCheckpointSession : IDisposable
    {
        string VmName { get; }
        string? VmId { get; }
        string Host { get; }
        string Hypervisor { get; }
        string? Configuration { get; }
        IReadOnlyList<DiskSource> Disks { get; }
        DiskSource? Memory { get; }
        /// <summary>The change-tracking reference this view was taken with (the next run's parent), or null.</summary>
        string? NewTrackingId { get; }
        double PauseSeconds { get; }
        /// <summary>What the run had to do differently and why (a chain healed, a shut-off VM read from its files).</summary>
        string? Note { get; }
        /// <summary>
        /// Called once every block is stored and before the manifest is written: ends the reading and returns the
        /// change-tracking reference to record in the manifest (some hypervisors only name it then: a Hyper-V
        /// reference point exists once its recovery checkpoint is converted).
        /// </summary>
        string? Seal();
        void Commit();
    }

    /// <summary>A disk of a VM to bring back: its name in the checkpoint and the restored file.</summary>
    public sealed class RegisteredDisk
    {
        public RegisteredDisk(string name, string path, DiskFormat format)
        {
            Name = name;
            Path = path;
            Format = format;
        }

        public string Name { get; }
        public string Path { get; }
        public DiskFormat Format { get; }
    }

    /// <summary>How to bring a VM back on a host from a checkpoint's configuration and restored disks.</summary>
    public sealed class RegistrationRequest
    {
        public RegistrationRequest(string vmName, string configuration, IReadOnlyList<RegisteredDisk> disks)
        {
            VmName = vmName;
            Configuration = configuration;
            Disks = disks;
        }

        public string VmName { get; }
        public string Configuration { get; }
        public IReadOnlyList<RegisteredDisk> Disks { get; }
        /// <summary>A new name (and a new identity) for the VM.</summary>
        public string? NewName { get; set; }
        /// <summary>Replace a VM of the same name on the target.</summary>
        public bool Force { get; set; }
        public bool Start { get; set; }
        /// <summary>A saved memory state file to resume from instead of booting.</summary>
        public string? MemoryStateFile { get; set; }
        /// <summary>The memory state file was prepared already (<see cref="IBackgroundCopyHost.PrepareMemoryState"/>); not with a new name.</summary>
        public bool MemoryStatePrepared { get; set; }
    }

    /// <summary>
    /// One hypervisor host: what Jobs and cmdlets need, so that they never branch on the hypervisor.
    /// Implementations: libvirt (Libvirt/), Hyper-V.
    /// </summary>
    public interface IHypervisor : ICheckpointSource, IDisposable
    {
        string Host { get; }
        IReadOnlyList<string> ListVms();
        /// <summary>
        /// Refuses, before anything is restored, a registration this host cannot do (a configuration of another
        /// hypervisor; a memory state resumed under a new name where the hypervisor cannot).
        /// </summary>
        void CheckRegistration(string vmName, string configuration, string? newName, bool resumeMemory);
        /// <summary>Defines the VM on this host (and starts or resumes it as asked); returns its name there.</summary>
        string Register(RegistrationRequest request, IJobReporter reporter);
        bool VmExists(string name);
        /// <summary>The VM's health: running, stopped on purpose, crashed, paused on an I/O error, missing.</summary>
        VmCondition GetCondition(string name);
        /// <summary>
        /// Calls <paramref name="changed"/> (with the VM's name, on any thread) when a VM of this host changes state;
        /// null when the hypervisor has no events. Dispose to stop.
        /// </summary>
        IDisposable? SubscribeToStateChanges(Action<string> changed);
        /// <summary>
        /// What this module left in a VM and its files to track changes between checkpoints (libvirt checkpoints and
        /// the bitmaps under them, Hyper-V reference points), each as a line naming it; with <paramref name="remove"/>,
        /// removes them too. The next checkpoint of the VM then reads every data block once (and still stores only the
        /// changed ones). <see cref="VmNotFoundException"/> for a VM this host does not have.
        /// </summary>
        IReadOnlyList<string> ChangeTracking(string vmName, bool remove);
        /// <summary>Starts a stopped (or crashed) VM in place.</summary>
        void StartVm(string name);
        /// <summary>Turns a VM off at once, as pulling its power would (to restart a guest that stopped answering).</summary>
        void StopVm(string name);
        /// <summary>The disk format this hypervisor runs its VMs from: what a restore onto it writes by default.</summary>
        DiskFormat PreferredDiskFormat { get; }
    }
}
