using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>A connection to a libvirt daemon, by URI (qemu:///system, qemu+unix:///system?socket=...).</summary>
    public sealed class LibvirtConnection : IDisposable
    {
        public const string DefaultUri = "qemu:///system";
        private IntPtr _conn;

        private LibvirtConnection(IntPtr conn, string uri)
        {
            _conn = conn;
            Uri = uri;
        }

        public string Uri { get; }

        internal IntPtr Handle => _conn != IntPtr.Zero ? _conn : throw new ObjectDisposedException(nameof(LibvirtConnection));

        public static LibvirtConnection Open(string? uri)
        {
            uri = string.IsNullOrEmpty(uri) ? DefaultUri : uri!;
            IntPtr conn;
            try
            {
                LibvirtNative.QuietErrors();
                conn = LibvirtNative.virConnectOpen(uri);
            }
            catch (DllNotFoundException e)
            {
                throw new HypervisorUnavailableException($"libvirt is not installed on this host (libvirt.so.0: {e.Message}).");
            }
            if (conn == IntPtr.Zero)
            {
                var error = LibvirtNative.LastError($"Cannot connect to libvirt at {uri}");
                throw new HypervisorUnavailableException(error.Message, error);
            }
            return new LibvirtConnection(conn, uri);
        }

        public string Hostname => LibvirtNative.TakeString(LibvirtNative.virConnectGetHostname(Handle)) ?? Environment.MachineName;

        /// <summary>The domain of that name, or null.</summary>
        public LibvirtDomain? FindDomain(string name)
        {
            var dom = LibvirtNative.virDomainLookupByName(Handle, name);
            if (dom != IntPtr.Zero) return new LibvirtDomain(this, dom);
            var error = LibvirtNative.LastError($"Looking up domain '{name}'");
            if (error.Code == LibvirtNative.ErrNoDomain) return null;
            throw error;
        }

        public LibvirtDomain GetDomain(string name)
            => FindDomain(name) ?? throw new VmNotFoundException($"No domain named '{name}' on {Uri}.");

        public List<LibvirtDomain> ListDomains()
        {
            int n = LibvirtNative.virConnectListAllDomains(Handle, out var array, 0);
            if (n < 0) throw LibvirtNative.LastError("Listing domains");
            var list = new List<LibvirtDomain>(n);
            try
            {
                for (int i = 0; i < n; i++) list.Add(new LibvirtDomain(this, Marshal.ReadIntPtr(array, i * IntPtr.Size)));
            }
            finally
            {
                LibvirtNative.Free(array);
            }
            return list;
        }

        /// <summary>Defines (persistently) a domain from its XML.</summary>
        public LibvirtDomain Define(string xml)
        {
            var dom = LibvirtNative.virDomainDefineXML(Handle, xml);
            if (dom == IntPtr.Zero) throw LibvirtNative.LastError("Defining the domain");
            return new LibvirtDomain(this, dom);
        }

        /// <summary>
        /// Starts a transient domain (never defined) that libvirt destroys when this connection closes: nothing of it
        /// outlives the process that started it, however that process ends.
        /// </summary>
        public LibvirtDomain StartTransient(string xml)
        {
            var dom = LibvirtNative.virDomainCreateXML(Handle, xml, LibvirtNative.StartAutoDestroy);
            if (dom == IntPtr.Zero) throw LibvirtNative.LastError("Starting the transient domain");
            return new LibvirtDomain(this, dom);
        }

        /// <summary>Restores a domain from a saved memory state file, with its XML replaced by <paramref name="xml"/>.</summary>
        public void RestoreSaved(string file, string? xml, bool paused)
        {
            if (LibvirtNative.virDomainRestoreFlags(Handle, file, xml, paused ? LibvirtNative.SavePaused : LibvirtNative.SaveRunning) < 0)
                throw LibvirtNative.LastError($"Restoring the saved state {file}");
        }

        public string SavedStateXml(string file)
            => LibvirtNative.TakeString(LibvirtNative.virDomainSaveImageGetXMLDesc(Handle, file, LibvirtNative.XmlSecure))
               ?? throw LibvirtNative.LastError($"Reading the domain XML of {file}");

        public void Dispose()
        {
            if (_conn != IntPtr.Zero) LibvirtNative.virConnectClose(_conn);
            _conn = IntPtr.Zero;
        }
    }
}
