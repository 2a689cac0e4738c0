using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>A libvirt domain: state, XML, backup jobs, checkpoints, save and lifecycle.</summary>
    public sealed class LibvirtDomain : IDisposable
    {
        private readonly LibvirtConnection _connection;
        private IntPtr _dom;

        internal LibvirtDomain(LibvirtConnection connection, IntPtr dom)
        {
            _connection = connection;
            _dom = dom;
            // Read once: every libvirt call resets the thread's last error, so asking for the name while building
            // an error message (LastError($"... '{Name}'")) would lose the error it is about.
            Name = LibvirtNative.PtrToUtf8(LibvirtNative.virDomainGetName(dom)) ?? "";
        }

        private IntPtr Handle => _dom != IntPtr.Zero ? _dom : throw new ObjectDisposedException(nameof(LibvirtDomain));

        public string Name { get; }

        public string Uuid
        {
            get
            {
                var buf = new byte[37];
                if (LibvirtNative.virDomainGetUUIDString(Handle, buf) < 0) throw LibvirtNative.LastError("Reading the domain UUID");
                return Encoding.ASCII.GetString(buf, 0, 36);
            }
        }

        /// <summary>virDomainState and its reason (e.g. shut off / crashed).</summary>
        public (int State, int Reason) State
        {
            get
            {
                if (LibvirtNative.virDomainGetState(Handle, out int state, out int reason, 0) < 0) throw LibvirtNative.LastError($"Reading the state of '{Name}'");
                return (state, reason);
            }
        }

        public bool IsActive => State.State is LibvirtNative.StateRunning or LibvirtNative.StatePaused or LibvirtNative.StateBlocked;

        public string GetXml(bool inactive = false)
            => LibvirtNative.TakeString(LibvirtNative.virDomainGetXMLDesc(Handle, LibvirtNative.XmlSecure | (inactive ? LibvirtNative.XmlInactive : 0)))
               ?? throw LibvirtNative.LastError($"Reading the XML of '{Name}'");

        /// <summary>
        /// Sends one JSON command to the QEMU guest agent and returns its JSON reply. libvirt first syncs with the agent
        /// (guest-sync), bounded by the same timeout, so a guest that stopped answering fails here within seconds.
        /// </summary>
        public string AgentCommand(string json, int timeoutSeconds)
            => LibvirtNative.TakeString(LibvirtNative.virDomainQemuAgentCommand(Handle, json, timeoutSeconds, 0))
               ?? throw LibvirtNative.LastError($"Asking the guest agent of '{Name}'");

        /// <summary>True when the domain has a job running (a backup, a migration, a save).</summary>
        public bool HasActiveJob
        {
            get
            {
                if (LibvirtNative.virDomainGetJobInfo(Handle, out var info) < 0) throw LibvirtNative.LastError($"Reading the job of '{Name}'");
                return info.Type != 0;
            }
        }

        public void BeginBackup(string backupXml, string? checkpointXml)
        {
            if (LibvirtNative.virDomainBackupBegin(Handle, backupXml, checkpointXml, 0) < 0)
                throw LibvirtNative.LastError($"Starting the backup of '{Name}'");
        }

        public void AbortJob()
        {
            if (LibvirtNative.virDomainAbortJob(Handle) < 0) throw LibvirtNative.LastError($"Ending the job of '{Name}'");
        }

        public List<string> ListCheckpoints()
        {
            int n = LibvirtNative.virDomainListAllCheckpoints(Handle, out var array, 0);
            if (n < 0) throw LibvirtNative.LastError($"Listing the checkpoints of '{Name}'");
            var names = new List<string>(n);
            try
            {
                for (int i = 0; i < n; i++)
                {
                    var cp = Marshal.ReadIntPtr(array, i * IntPtr.Size);
                    names.Add(LibvirtNative.PtrToUtf8(LibvirtNative.virDomainCheckpointGetName(cp)) ?? "");
                    LibvirtNative.virDomainCheckpointFree(cp);
                }
            }
            finally
            {
                LibvirtNative.Free(array);
            }
            return names;
        }

        /// <summary>Deletes a checkpoint (merging its bitmap into its parent's); with metadataOnly, only libvirt's record.</summary>
        public void DeleteCheckpoint(string name, bool metadataOnly)
        {
            var cp = LibvirtNative.virDomainCheckpointLookupByName(Handle, name, 0);
            if (cp == IntPtr.Zero) throw LibvirtNative.LastError($"Looking up checkpoint {name} of '{Name}'");
            try
            {
                if (LibvirtNative.virDomainCheckpointDelete(cp, metadataOnly ? LibvirtNative.CheckpointDeleteMetadataOnly : 0) < 0)
                    throw LibvirtNative.LastError($"Deleting checkpoint {name} of '{Name}'");
            }
            finally
            {
                LibvirtNative.virDomainCheckpointFree(cp);
            }
        }

        /// <summary>Creates a checkpoint (libvirt's record and a dirty bitmap in each qcow2 it names) without a backup.</summary>
        public void CreateCheckpoint(string xml)
        {
            var cp = LibvirtNative.virDomainCheckpointCreateXML(Handle, xml, 0);
            if (cp == IntPtr.Zero) throw LibvirtNative.LastError($"Creating a checkpoint of '{Name}'");
            LibvirtNative.virDomainCheckpointFree(cp);
        }

        /// <summary>
        /// A live external snapshot without libvirt metadata: memory into its file while the guest runs, then each disk
        /// switched to a new overlay at one instant; the disks underneath stay as they were at that instant.
        /// </summary>
        public void CreateLiveSnapshot(string xml)
        {
            var snapshot = LibvirtNative.virDomainSnapshotCreateXML(Handle, xml,
                LibvirtNative.SnapshotNoMetadata | LibvirtNative.SnapshotAtomic | LibvirtNative.SnapshotLive);
            if (snapshot == IntPtr.Zero) throw LibvirtNative.LastError($"Taking a live snapshot of '{Name}'");
            LibvirtNative.virDomainSnapshotFree(snapshot);
        }

        /// <summary>The guest's downtime of the last completed job (a live snapshot's final stop), or null when not reported.</summary>
        public TimeSpan? LastJobDowntime()
        {
            if (LibvirtNative.virDomainGetJobStats(Handle, out _, out var parameters, out int count, LibvirtNative.JobStatsCompleted) < 0)
            {
                LibvirtNative.virResetLastError();
                return null;
            }
            try
            {
                // virTypedParameter: char field[80]; int type; (padding) union value (8 bytes).
                const int Size = 96, ValueOffset = 88;
                for (int i = 0; i < count; i++)
                {
                    IntPtr p = parameters + i * Size;
                    if (Marshal.ReadInt32(p, 80) != LibvirtNative.TypedParamULLong) continue;
                    if (LibvirtNative.PtrToUtf8(p) == "downtime") return TimeSpan.FromMilliseconds(Marshal.ReadInt64(p, ValueOffset));
                }
                return null;
            }
            finally
            {
                LibvirtNative.virTypedParamsFree(parameters, count);
            }
        }

        /// <summary>
        /// Merges the active overlay of <paramref name="disk"/> back into the disk underneath while the guest runs, and
        /// switches the guest to it (blockcommit --active --pivot). Returns when the guest runs on the disk underneath.
        /// </summary>
        public void CommitActiveLayer(string disk, TimeSpan timeout)
        {
            // A merge an interrupted run started may still be going: then it is only waited for and finished.
            bool running = LibvirtNative.virDomainGetBlockJobInfo(Handle, disk, out _, 0) == 1;
            LibvirtNative.virResetLastError();
            if (!running && LibvirtNative.virDomainBlockCommit(Handle, disk, null, null, 0, LibvirtNative.BlockCommitActive) < 0)
                throw LibvirtNative.LastError($"Merging the overlay of disk {disk} of '{Name}'");
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (true)
            {
                int got = LibvirtNative.virDomainGetBlockJobInfo(Handle, disk, out var info, 0);
                if (got < 0) throw LibvirtNative.LastError($"Following the merge of disk {disk} of '{Name}'");
                // Ready once everything is copied: then the switch. Before that, libvirt refuses it ("not ready").
                if (got == 1 && info.End > 0 && info.Cur == info.End && LibvirtNative.virDomainBlockJobAbort(Handle, disk, LibvirtNative.BlockJobAbortPivot) == 0)
                    return;
                LibvirtNative.virResetLastError();
                if (clock.Elapsed > timeout)
                    throw new LibvirtException($"The merge of disk {disk} of '{Name}' did not finish within {timeout.TotalSeconds:0} s; it goes on, and the next checkpoint finishes it.", 0, 0);
                System.Threading.Thread.Sleep(20);
            }
        }

        /// <summary>Starts pulling the backing data of <paramref name="disk"/> into its top image while the guest runs (blockpull).</summary>
        public void StartPull(string disk)
        {
            if (LibvirtNative.virDomainGetBlockJobInfo(Handle, disk, out _, 0) == 1) return; // one runs already
            LibvirtNative.virResetLastError();
            if (LibvirtNative.virDomainBlockPull(Handle, disk, 0, 0) < 0)
                throw LibvirtNative.LastError($"Pulling the data of disk {disk} of '{Name}' home");
        }

        /// <summary>The block job on <paramref name="disk"/>: running or not, bytes done and in all.</summary>
        public (bool Running, long Done, long Total) BlockJob(string disk)
        {
            int got = LibvirtNative.virDomainGetBlockJobInfo(Handle, disk, out var info, 0);
            if (got < 0) throw LibvirtNative.LastError($"Following the block job of disk {disk} of '{Name}'");
            return got == 1 ? (true, (long)info.Cur, (long)info.End) : (false, 0, 0);
        }

        /// <summary>Saves memory and device state to a file; the domain stops.</summary>
        public void Save(string file)
        {
            if (LibvirtNative.virDomainSaveFlags(Handle, file, null, 0) < 0) throw LibvirtNative.LastError($"Saving the state of '{Name}'");
        }

        public void Suspend()
        {
            if (LibvirtNative.virDomainSuspend(Handle) < 0) throw LibvirtNative.LastError($"Pausing '{Name}'");
        }

        public void Resume()
        {
            if (LibvirtNative.virDomainResume(Handle) < 0) throw LibvirtNative.LastError($"Resuming '{Name}'");
        }

        public void Start()
        {
            if (LibvirtNative.virDomainCreate(Handle) < 0) throw LibvirtNative.LastError($"Starting '{Name}'");
        }

        public void Destroy()
        {
            if (LibvirtNative.virDomainDestroy(Handle) < 0) throw LibvirtNative.LastError($"Stopping '{Name}'");
        }

        public void Undefine()
        {
            if (LibvirtNative.virDomainUndefineFlags(Handle, LibvirtNative.UndefineManagedSave | LibvirtNative.UndefineSnapshotsMetadata |
                                                             LibvirtNative.UndefineCheckpointsMetadata | LibvirtNative.UndefineNvram) < 0)
                throw LibvirtNative.LastError($"Undefining '{Name}'");
        }

        public void Dispose()
        {
            if (_dom != IntPtr.Zero) LibvirtNative.virDomainFree(_dom);
            _dom = IntPtr.Zero;
        }
    }
}
