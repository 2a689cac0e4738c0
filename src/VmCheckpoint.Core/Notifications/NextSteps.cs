using System;
using System.IO;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.Libvirt;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Notifications
{
    /// <summary>What an administrator should do about an error, in one or two sentences that name the commands.</summary>
    internal static class NextSteps
    {
        /// <summary>The step for an error of a scheduled run; <paramref name="rerun"/> is the command that tries again.</summary>
        public static string ForRun(Exception e, string repository, string rerun)
        {
            if (e is AggregateException a && a.InnerExceptions.Count == 1) e = a.InnerException!;
            switch (e)
            {
                case RepositoryNotFoundException r when r.Unreachable:
                    return $"Check that {repository} exists and can be reached from {Environment.MachineName} (is the share mounted and its server up? was the folder moved or deleted?), then run {rerun} to try again.";
                case RepositoryNotFoundException _:
                    return $"{repository} holds no repository: put it back, create one (New-VmCheckpointRepository -Path '{repository}'), or register the schedule again with the right -Repository; then run {rerun}.";
                case RepositoryLockedException _:
                    return $"Another job holds the repository (Get-VmCheckpointJob -Result Running shows it): let it finish, then run {rerun}.";
                case VmNotFoundException _:
                case LibvirtException lv when lv.Code == LibvirtNative.ErrNoDomain:
                    return $"Check the VM's name on its host (virsh list --all, or Get-VM), or register the schedule again without it (Register-VmCheckpointSchedule); then run {rerun}.";
                case HypervisorUnavailableException _:
                    return $"Check that the hypervisor host is up and answers (libvirtd running, the Hyper-V host reachable), then run {rerun}.";
                case VmBusyException _:
                    return $"Another job works on the VM (a backup, a migration, a snapshot): let it finish; the next run tries again, or run {rerun}.";
                case DiskInUseException _:
                    return $"A running VM holds the disk: checkpoint the VM by name (its live way) rather than its files; then run {rerun}.";
                case UnauthorizedAccessException _:
                    return $"The scheduled run's user may not read or write a file it needs (the error names it): grant access, or run the schedule as root; then run {rerun}.";
                case IOException io when IsDiskFull(io):
                    return $"Free space where the error says (on the repository's share: remove old checkpoints with Remove-VmCheckpoint -KeepLast N), then run {rerun}.";
                case BlockDamagedException _:
                case InvalidDataException _:
                    return $"Data read back did not match its hash: run Test-VmCheckpoint -ReadData -Repository '{repository}' to find the damage, then run {rerun}.";
                default:
                    return $"See the job log (Get-VmCheckpointJob -Result Failed) for the details, put the cause right, then run {rerun} to check.";
            }
        }

        internal static bool IsDiskFull(IOException e)
        {
            int code = e.HResult & 0xFFFF;
            return code == 0x70 || code == 0x27 || code == 28 /* ENOSPC */ || e.Message.IndexOf("No space left", StringComparison.OrdinalIgnoreCase) >= 0;
        }
    }
}
