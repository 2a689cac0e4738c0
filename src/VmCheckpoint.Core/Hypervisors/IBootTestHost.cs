using System;
using System.Collections.Generic;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors
{
    /// <summary>What a boot test asks the host to start: a checkpoint's VM under a new name, on disks that are its own.</summary>
    public sealed class IsolatedBootRequest
    {
        public IsolatedBootRequest(string configuration, IReadOnlyList<RegisteredDisk> disks, string name, string folder)
        {
            Configuration = configuration;
            Disks = disks;
            Name = name;
            Folder = folder;
        }

        /// <summary>The checkpoint's VM configuration.</summary>
        public string Configuration { get; }
        /// <summary>The overlays the copy runs on, by disk name.</summary>
        public IReadOnlyList<RegisteredDisk> Disks { get; }
        /// <summary>The copy's name on the host (never the original's).</summary>
        public string Name { get; }
        /// <summary>The folder of the copy's files (overlays, console log, NVRAM), removed with it.</summary>
        public string Folder { get; }
    }

    /// <summary>
    /// A running isolated copy of a checkpoint's VM. Disposing it stops it, and the host forgets it: it was never
    /// defined.
    /// </summary>
    public interface IIsolatedVm : IDisposable
    {
        string Name { get; }
        /// <summary>Running, or what stopped it (crashed, shut off).</summary>
        VmCondition Condition();
        /// <summary>True when the guest agent answers a ping now.</summary>
        bool GuestAgentAnswers();
        /// <summary>What the guest wrote on its serial ports and consoles so far.</summary>
        string ConsoleText();
    }

    /// <summary>
    /// A host that can boot a checkpoint as an isolated copy (libvirt: a transient domain with no network and files
    /// of its own). Hyper-V has no such thing here.
    /// </summary>
    public interface IBootTestHost
    {
        /// <summary>Whether the configuration has a guest agent channel to ask.</summary>
        bool HasGuestAgentChannel(string configuration);
        IIsolatedVm StartIsolated(IsolatedBootRequest request, IJobReporter reporter);
    }
}
