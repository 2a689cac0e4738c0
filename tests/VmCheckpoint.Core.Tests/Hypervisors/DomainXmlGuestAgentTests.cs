using VmCheckpoint.Core.Hypervisors.Libvirt;
using Xunit;

namespace VmCheckpoint.Core.Tests.Hypervisors;

/// <summary>
/// Whether the health probe asks a domain's guest agent at all: read from the domain XML. The channels below are
/// shaped as libvirt 9.0 writes them into the live XML of a running domain (checked with virsh dumpxml).
/// </summary>
public sealed class DomainXmlGuestAgentTests
{
    private static string Domain(string channels) =>
        "<domain type='qemu' id='23'><name>vm</name><devices>" +
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/x.qcow2' index='1'/><target dev='vda' bus='virtio'/></disk>" +
        "<serial type='file'><source path='/c.log' append='on'/><target type='isa-serial' port='0'/></serial>" +
        channels + "</devices></domain>";

    private static string AgentChannel(string? state) =>
        "<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-23-vm/org.qemu.guest_agent.0'/>" +
        $"<target type='virtio' name='org.qemu.guest_agent.0'{(state is null ? "" : $" state='{state}'")}/>" +
        "<alias name='channel0'/><address type='virtio-serial' controller='0' bus='0' port='1'/></channel>";

    [Fact]
    public void AConnectedAgentIsProbed()
        => Assert.Equal(GuestAgentChannel.Connected, DomainXml.GuestAgent(Domain(AgentChannel("connected"))));

    [Fact]
    public void AnAgentPortNobodyHoldsOpenIsNotProbed()
        => Assert.Equal(GuestAgentChannel.Disconnected, DomainXml.GuestAgent(Domain(AgentChannel("disconnected"))));

    [Fact]
    public void AnInactiveDefinitionHasNoStateAndIsNotProbed()
        => Assert.Equal(GuestAgentChannel.Disconnected, DomainXml.GuestAgent(Domain(AgentChannel(null))));

    [Fact]
    public void ADomainWithoutAgentChannelIsNotProbed()
    {
        Assert.Equal(GuestAgentChannel.None, DomainXml.GuestAgent(Domain("")));
        Assert.Equal(GuestAgentChannel.None, DomainXml.GuestAgent("<domain type='qemu'><name>bare</name></domain>"));
    }

    [Fact]
    public void OtherChannelsAreNotTheAgent()
    {
        // A connected SPICE agent or some other virtio port says nothing about the QEMU guest agent.
        var others = "<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0' state='connected'/></channel>" +
                     "<channel type='unix'><target type='virtio' name='org.example.port' state='connected'/></channel>" +
                     "<channel type='unix'><target type='guestfwd' name='org.qemu.guest_agent.0' state='connected'/></channel>";
        Assert.Equal(GuestAgentChannel.None, DomainXml.GuestAgent(Domain(others)));
        Assert.Equal(GuestAgentChannel.Connected, DomainXml.GuestAgent(Domain(others + AgentChannel("connected"))));
    }
}
