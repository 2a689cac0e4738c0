using System;
using System.Collections.Generic;
using System.Linq;
using System.Xml.Linq;
using VmCheckpoint.Core.Disks;

namespace VmCheckpoint.Core.Hypervisors.Libvirt
{
    /// <summary>A disk of a domain as its XML describes it.</summary>
    internal sealed class DomainDisk
    {
        public string Target { get; set; } = "";
        public string Type { get; set; } = "";
        public string? SourceFile { get; set; }
        public string DriverType { get; set; } = "raw";
        public bool IsQcow2 => string.Equals(DriverType, "qcow2", StringComparison.OrdinalIgnoreCase);

        /// <summary>The format libvirt declares for the file (qemu's driver type): vpc is VHD; a type VmCheckpoint does not read is refused.</summary>
        public DiskFormat Format => DriverType.ToLowerInvariant() switch
        {
            "qcow2" => DiskFormat.Qcow2,
            "raw" => DiskFormat.Raw,
            "vpc" => DiskFormat.Vhd,
            "vhdx" => DiskFormat.Vhdx,
            _ => throw new ImageFormatException(SourceFile ?? Target, null, DriverType,
                $"disk {Target} is declared {DriverType}, a format VmCheckpoint does not read; convert it with qemu-img convert -O qcow2"),
        };
    }

    /// <summary>The QEMU guest agent channel of a domain, as its live XML describes it.</summary>
    internal enum GuestAgentChannel
    {
        /// <summary>No org.qemu.guest_agent.0 channel: nothing to probe.</summary>
        None,
        /// <summary>The channel exists but no agent in the guest holds it open (not started yet, or none installed).</summary>
        Disconnected,
        /// <summary>An agent in the guest has the port open: it is expected to answer.</summary>
        Connected,
    }

    /// <summary>Reading and rewriting libvirt domain XML.</summary>
    internal static class DomainXml
    {
        /// <summary>The domain's disks (device='disk'; CD-ROMs and floppies are not checkpointed).</summary>
        public static List<DomainDisk> Disks(string xml)
        {
            var doc = XDocument.Parse(xml);
            return doc.Root!.Element("devices")?.Elements("disk")
                       .Where(d => (string?)d.Attribute("device") is null or "disk")
                       .Select(d => new DomainDisk
                       {
                           Target = (string?)d.Element("target")?.Attribute("dev") ?? "",
                           Type = (string?)d.Attribute("type") ?? "file",
                           SourceFile = (string?)d.Element("source")?.Attribute("file") ?? (string?)d.Element("source")?.Attribute("dev"),
                           DriverType = (string?)d.Element("driver")?.Attribute("type") ?? "raw",
                       })
                       .Where(d => d.Target.Length > 0)
                       .ToList()
                   ?? new List<DomainDisk>();
        }

        /// <summary>
        /// The configuration to define on a target host: disks pointed at the restored files, and what cannot exist
        /// there removed (backing chains, the old identity and MAC addresses when renamed, host security labels).
        /// </summary>
        public static string ForRestore(string xml, IReadOnlyList<RegisteredDisk> disks, string? newName)
        {
            var doc = XDocument.Parse(xml);
            var root = doc.Root!;
            if (newName != null)
            {
                root.Element("name")!.Value = newName;
                root.Element("uuid")?.Remove();
                foreach (var mac in root.Descendants("interface").Elements("mac").ToList()) mac.Remove();
                // A copy gets its own files: it must not append to the original's serial log or share its UEFI
                // variables (TPM state is kept by UUID, and the copy has a new one).
                string? folder = disks.Count > 0 ? System.IO.Path.GetDirectoryName(disks[0].Path) : null;
                if (folder != null)
                {
                    string Own(string file) => System.IO.Path.Combine(folder, newName + "-" + System.IO.Path.GetFileName(file));
                    foreach (var source in root.Element("devices")?.Elements().Where(e => e.Name == "serial" || e.Name == "console" || e.Name == "channel")
                                 .Where(e => (string?)e.Attribute("type") == "file").Elements("source") ?? Enumerable.Empty<XElement>())
                        if (source.Attribute("path") is { } path) path.Value = Own(path.Value);
                    foreach (var log in root.Descendants("log").Where(l => l.Attribute("file") != null))
                        log.Attribute("file")!.Value = Own(log.Attribute("file")!.Value);
                    if (root.Element("os")?.Element("nvram") is { } nvram && !string.IsNullOrEmpty(nvram.Value))
                        nvram.Value = Own(nvram.Value); // libvirt makes it from its template when the VM starts
                }
            }
            root.Elements("seclabel").Remove();
            foreach (var disk in root.Element("devices")?.Elements("disk").ToList() ?? new List<XElement>())
            {
                var target = (string?)disk.Element("target")?.Attribute("dev");
                var restored = disks.FirstOrDefault(d => string.Equals(d.Name, target, StringComparison.Ordinal));
                if (restored is null) continue;
                disk.SetAttributeValue("type", "file");
                disk.Element("source")?.Remove();
                disk.Element("backingStore")?.Remove();
                disk.Elements("alias").Remove();
                var driver = disk.Element("driver");
                if (driver is null) disk.AddFirst(driver = new XElement("driver", new XAttribute("name", "qemu")));
                driver.SetAttributeValue("type", restored.Format switch { DiskFormat.Qcow2 => "qcow2", DiskFormat.Vhd => "vpc", DiskFormat.Vhdx => "vhdx", _ => "raw" });
                driver.AddAfterSelf(new XElement("source", new XAttribute("file", restored.Path)));
            }
            return doc.ToString();
        }

        /// <summary>The file the serial console of a boot test copy is written to, in its folder.</summary>
        public const string BootTestConsole = "console.log";

        /// <summary>
        /// A copy of a checkpoint's VM for a boot test (<see cref="ForRestore"/> under <paramref name="newName"/>, its disks
        /// the overlays in <paramref name="folder"/>) that can touch nothing of the original nor of the network: no
        /// interfaces, no host devices or shared folders, no disk of the original left in (a disk outside the checkpoint),
        /// every serial port and console written to files of its own, the guest agent's socket chosen by libvirt, and
        /// graphics on ports libvirt picks.
        /// </summary>
        public static string ForBootTest(string xml, IReadOnlyList<RegisteredDisk> disks, string newName, string folder)
        {
            var doc = XDocument.Parse(ForRestore(xml, disks, newName));
            var devices = doc.Root!.Element("devices");
            if (devices is null) doc.Root.Add(devices = new XElement("devices"));
            devices.Elements().Where(e => e.Name == "interface" || e.Name == "hostdev" || e.Name == "redirdev" || e.Name == "filesystem" || e.Name == "smartcard").Remove();
            // A writable disk the checkpoint does not hold would be the original's own file; CD-ROMs are read-only.
            devices.Elements("disk").Where(d => (string?)d.Attribute("device") is null or "disk" or "lun")
                .Where(d => !disks.Any(r => r.Name == (string?)d.Element("target")?.Attribute("dev")))
                .Where(d => d.Element("readonly") is null).Remove();
            int port = 0;
            foreach (var serial in devices.Elements("serial").ToList())
                ToOwnFile(serial, System.IO.Path.Combine(folder, port++ == 0 ? BootTestConsole : $"serial{port - 1}.log"));
            // A console whose target is a serial port mirrors it (libvirt adds it back); a virtio console is a port of its own.
            foreach (var console in devices.Elements("console").ToList())
            {
                var kind = (string?)console.Element("target")?.Attribute("type");
                if (kind is null or "serial") console.Remove();
                else ToOwnFile(console, System.IO.Path.Combine(folder, $"console-{kind}.log"));
            }
            foreach (var channel in devices.Elements("channel").Where(c => (string?)c.Attribute("type") == "unix")) channel.Elements("source").Remove();
            foreach (var graphics in devices.Elements("graphics"))
            {
                foreach (var name in new[] { "port", "tlsPort", "websocket", "socket" }) graphics.Attribute(name)?.Remove();
                if ((string?)graphics.Attribute("type") is "vnc" or "spice") graphics.SetAttributeValue("autoport", "yes");
                graphics.Elements("listen").Where(l => (string?)l.Attribute("type") == "socket").Remove();
            }
            return doc.ToString();
        }

        private static void ToOwnFile(XElement chardev, string path)
        {
            chardev.SetAttributeValue("type", "file");
            chardev.Elements("source").Remove();
            chardev.Elements("log").Remove();
            chardev.Elements("protocol").Remove();
            chardev.AddFirst(new XElement("source", new XAttribute("path", path)));
        }

        /// <summary>The NVRAM file a definition names, if any.</summary>
        public static string? Nvram(string xml) => XDocument.Parse(xml).Root!.Element("os")?.Element("nvram")?.Value is { Length: > 0 } path ? path : null;

        /// <summary>
        /// The saved state's XML given the identity libvirt chose when the copy was defined (its UUID, its interfaces'
        /// MAC addresses, in order): the running copy and its definition are one domain.
        /// </summary>
        public static string AdoptIdentity(string savedXml, string definedXml)
        {
            var saved = XDocument.Parse(savedXml);
            var defined = XDocument.Parse(definedXml).Root!;
            var root = saved.Root!;
            var uuid = (string?)defined.Element("uuid");
            if (uuid != null)
            {
                root.Element("uuid")?.Remove();
                root.Element("name")!.AddAfterSelf(new XElement("uuid", uuid));
            }
            var macs = defined.Element("devices")?.Elements("interface").Select(i => (string?)i.Element("mac")?.Attribute("address")).ToList() ?? new List<string?>();
            var interfaces = root.Element("devices")?.Elements("interface").ToList() ?? new List<XElement>();
            for (int i = 0; i < interfaces.Count && i < macs.Count; i++)
            {
                if (macs[i] is null) continue;
                interfaces[i].Elements("mac").Remove();
                interfaces[i].AddFirst(new XElement("mac", new XAttribute("address", macs[i]!)));
            }
            return saved.ToString();
        }

        public const string GuestAgentChannelName = "org.qemu.guest_agent.0";

        /// <summary>
        /// The guest agent channel and its state. Only the live XML of a running domain carries state='connected'
        /// (libvirt follows the guest opening and closing the port); an inactive definition reads as Disconnected.
        /// </summary>
        public static GuestAgentChannel GuestAgent(string xml)
        {
            var target = XDocument.Parse(xml).Root!.Element("devices")?.Elements("channel").Elements("target")
                .FirstOrDefault(t => (string?)t.Attribute("type") == "virtio" && (string?)t.Attribute("name") == GuestAgentChannelName);
            if (target is null) return GuestAgentChannel.None;
            return (string?)target.Attribute("state") == "connected" ? GuestAgentChannel.Connected : GuestAgentChannel.Disconnected;
        }

        /// <summary>Whether disk <paramref name="target"/> still reads through a backing store (a source under a backingStore).</summary>
        public static bool HasBackingStore(string xml, string target)
        {
            var disk = XDocument.Parse(xml).Root!.Element("devices")?.Elements("disk")
                .FirstOrDefault(d => (string?)d.Element("target")?.Attribute("dev") == target);
            return disk?.Element("backingStore")?.Element("source") != null;
        }

        public static string Name(string xml) => XDocument.Parse(xml).Root!.Element("name")?.Value ?? "";

        public static string Escape(string s) => new XText(s).ToString();
    }
}
