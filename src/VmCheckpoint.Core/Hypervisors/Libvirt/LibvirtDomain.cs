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
