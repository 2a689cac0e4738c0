using System.Xml.Linq;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.Libvirt;
using Xunit;

namespace VmCheckpoint.Core.Tests.Hypervisors;

/// <summary>
/// The isolated copy a boot test starts: nothing in its XML may reach the original's files, its network or the host's
/// devices. The domain below has one of each thing that could.
/// </summary>
public sealed class DomainXmlBootTestTests
{
    private const string Original = """
        <domain type='kvm'>
          <name>web01</name>
          <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
          <os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram>/var/lib/libvirt/qemu/nvram/web01_VARS.fd</nvram></os>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/vms/web01.qcow2'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/vms/web01-scratch.raw'/><target dev='vdb' bus='virtio'/></disk>
            <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='/iso/tools.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
            <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/><model type='virtio'/></interface>
            <interface type='bridge'><source bridge='br0'/></interface>
            <hostdev mode='subsystem' type='pci'><source><address domain='0' bus='3' slot='0' function='0'/></source></hostdev>
            <filesystem type='mount'><source dir='/srv/share'/><target dir='share'/></filesystem>
            <serial type='pty'><target port='0'/><log file='/var/log/libvirt/qemu/web01-serial0.log'/></serial>
            <serial type='file'><source path='/var/log/web01-ttyS1.log'/><target port='1'/></serial>
            <console type='pty'><target type='serial' port='0'/></console>
            <console type='pty'><target type='virtio' port='1'/></console>
            <channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/web01.org.qemu.guest_agent.0'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
            <graphics type='vnc' port='5901' autoport='no' listen='0.0.0.0'/>
          </devices>
          <seclabel type='dynamic' model='apparmor'/>
        </domain>
        """;

    private static XElement Copy() => XDocument.Parse(DomainXml.ForBootTest(Original,
        new[] { new RegisteredDisk("vda", "/var/tmp/bt/vda.qcow2", DiskFormat.Qcow2) }, "web01-boottest-1234", "/var/tmp/bt")).Root!;

    [Fact]
    public void TheCopyHasItsOwnNameAndNoIdentityOfTheOriginal()
    {
        var copy = Copy();
        Assert.Equal("web01-boottest-1234", copy.Element("name")!.Value);
        Assert.Null(copy.Element("uuid"));
        Assert.Empty(copy.Elements("seclabel"));
    }

    [Fact]
    public void TheCopyHasNoNetworkNoHostDevicesAndNoSharedFolders()
    {
        var devices = Copy().Element("devices")!;
        Assert.Empty(devices.Elements("interface"));
        Assert.Empty(devices.Elements("hostdev"));
        Assert.Empty(devices.Elements("filesystem"));
    }

    [Fact]
    public void OnlyTheOverlaysAndReadOnlyMediaAreItsDisks()
    {
        var disks = Copy().Element("devices")!.Elements("disk").ToList();
        Assert.Equal(new[] { "/var/tmp/bt/vda.qcow2", "/iso/tools.iso" }, disks.Select(d => (string?)d.Element("source")?.Attribute("file")));
        Assert.Equal("qcow2", (string?)disks[0].Element("driver")!.Attribute("type"));
    }

    [Fact]
    public void EverySerialPortAndConsoleWritesToAFileInTheCopysFolder()
    {
        var devices = Copy().Element("devices")!;
        var serials = devices.Elements("serial").ToList();
        Assert.Equal(new[] { "/var/tmp/bt/console.log", "/var/tmp/bt/serial1.log" }, serials.Select(s => (string?)s.Element("source")?.Attribute("path")));
        Assert.All(serials, s => Assert.Equal("file", (string?)s.Attribute("type")));
        Assert.Empty(devices.Descendants("log"));
        var console = Assert.Single(devices.Elements("console"));
        Assert.Equal("/var/tmp/bt/console-virtio.log", (string?)console.Element("source")?.Attribute("path"));
        Assert.DoesNotContain("/var/log", devices.ToString());
    }

    [Fact]
    public void TheAgentSocketNvramAndGraphicsPortAreTheCopysOwn()
    {
        var copy = Copy();
        var channel = Assert.Single(copy.Element("devices")!.Elements("channel"));
        Assert.Null(channel.Element("source"));
        Assert.Equal("/var/tmp/bt/web01-boottest-1234-web01_VARS.fd", copy.Element("os")!.Element("nvram")!.Value);
        var graphics = Assert.Single(copy.Element("devices")!.Elements("graphics"));
        Assert.Null(graphics.Attribute("port"));
        Assert.Equal("yes", (string?)graphics.Attribute("autoport"));
    }
}
