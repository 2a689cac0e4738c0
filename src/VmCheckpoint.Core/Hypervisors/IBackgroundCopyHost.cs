using System.Collections.Generic;
namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>Where a disk's background copy stands.</summary>
    public sealed class BackgroundCopyState
    {
        /// <summary>The disk still reads through a backing store (the copy is not done).</summary>
        public bool HasBackingStore { get; set; }
        /// <summary>A copy job runs on the disk now.</summary>
        public bool Running { get; set; }
        public long BytesDone { get; set; }
        public long BytesTotal { get; set; }
    }

    /// <summary>
    /// A host that moves a running VM's disk data home from its backing store while the guest runs (libvirt block pull):
    /// what instant restore needs. Hyper-V has no such thing here: its restores stay full restores.
    /// </summary>
    public interface IBackgroundCopyHost
    {
        /// <summary>Starts copying the backing data of <paramref name="disk"/> into its top image (virDomainBlockPull).</summary>
        void StartBackgroundCopy(string vmName, string disk);

        /// <summary>The copy's state; null when the VM does not run (nothing can copy then).</summary>
        BackgroundCopyState? GetBackgroundCopy(string vmName, string disk);

        /// <summary>
        /// Turns a restored memory state file into what the hypervisor resumes from, for the VM under its own name on
        /// <paramref name="disks"/>, ahead of <see cref="IHypervisor.Register"/> (given
        /// <see cref="RegistrationRequest.MemoryStatePrepared"/>): an instant restore does it while its export server
        /// starts, so that the VM's resume waits for nothing else.
        /// </summary>
        void PrepareMemoryState(string memoryStateFile, IReadOnlyList<RegisteredDisk> disks);
    }
}
