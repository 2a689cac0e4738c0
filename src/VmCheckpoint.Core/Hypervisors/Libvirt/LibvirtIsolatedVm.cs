using System;
using System.IO;
using System.Linq;
using System.Text;
using VmCheckpoint.Core.Reporting;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>
    /// A boot test's copy on libvirt: a transient domain started with auto-destroy (it dies with the connection, so a
    /// killed PowerShell leaves no domain behind) from <see cref="DomainXml.ForBootTest"/>.
    /// </summary>
    internal sealed class LibvirtIsolatedVm : IIsolatedVm
    {
        private const string GuestPing = "{\"execute\":\"guest-ping\"}";
        private readonly LibvirtDomain _domain;
        private readonly string _folder;

        private LibvirtIsolatedVm(LibvirtDomain domain, string folder)
        {
            _domain = domain;
            _folder = folder;
        }

        public string Name => _domain.Name;

        public static LibvirtIsolatedVm Start(LibvirtConnection connection, IsolatedBootRequest request, IJobReporter reporter)
        {
            if (Hypervisors.HyperV.HyperVConfiguration.IsHyperV(request.Configuration))
                throw new NotSupportedException("The checkpoint was taken on Hyper-V: libvirt cannot boot its configuration.");
            string xml = DomainXml.ForBootTest(request.Configuration, request.Disks, request.Name, request.Folder);
            // UEFI variables hold the boot entries: the copy starts from a copy of the original's (libvirt makes
            // them from the firmware's template when there are none).
            if (DomainXml.Nvram(request.Configuration) is { } original && DomainXml.Nvram(xml) is { } own && File.Exists(original))
            {
                try { File.Copy(original, own, overwrite: true); }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                    reporter.Verbose($"The UEFI variables {original} could not be copied ({e.Message}); the copy starts from the firmware's template.");
                }
            }
            var domain = connection.StartTransient(xml);
            reporter.Verbose($"Started '{domain.Name}' on {connection.Uri}: transient, no network interfaces, its console in {request.Folder}.");
            return new LibvirtIsolatedVm(domain, request.Folder);
        }

        public VmCondition Condition()
        {
            try
            {
                var (state, reason) = _domain.State;
                return state is LibvirtNative.StateRunning or LibvirtNative.StateBlocked
                    ? new VmCondition(VmConditionKind.Running, "running")
                    : new VmCondition(state == LibvirtNative.StateCrashed ? VmConditionKind.Crashed : VmConditionKind.Stopped, $"state {state}, reason {reason}");
            }
            catch (LibvirtException e) when (e.Code == LibvirtNative.ErrNoDomain)
            {
                // A transient domain that stopped is gone at once.
                return new VmCondition(VmConditionKind.Missing, "it stopped (powered off or crashed)");
            }
        }

        public bool GuestAgentAnswers()
        {
            try
            {
                if (DomainXml.GuestAgent(_domain.GetXml()) != GuestAgentChannel.Connected) return false;
                _domain.AgentCommand(GuestPing, LibvirtHypervisor.AgentTimeoutSeconds);
                return true;
            }
            catch (LibvirtException)
            {
                return false;
            }
        }

        public string ConsoleText()
        {
            if (!Directory.Exists(_folder)) return "";
            var text = new StringBuilder();
            foreach (var file in Directory.GetFiles(_folder, "*.log").OrderBy(f => f, StringComparer.Ordinal))
            {
                try
                {
                    using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
                    using var reader = new StreamReader(stream, Encoding.UTF8);
                    text.Append(reader.ReadToEnd());
                }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
            return text.ToString();
        }

        public void Dispose()
        {
            try { if (_domain.IsActive) _domain.Destroy(); }
            catch (LibvirtException) { } // gone already: a transient domain that stopped is forgotten
            _domain.Dispose();
        }
    }
}
