using System.IO;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Hypervisors.HyperV;
using Xunit;

namespace VmCheckpoint.Core.Tests.Hypervisors;

// The Hyper-V provider's own logic, without Hyper-V. Its conversation with Hyper-V is tested end to end in
// tests/Pester/HyperV.Tests.ps1, against the stand-in of the Hyper-V module (Hyper-V cannot run on Linux).
public sealed class HyperVProviderTests
{
    [Theory]
    [InlineData("Running", "OkApplicationsHealthy", VmConditionKind.Running)]
    [InlineData("Running", null, VmConditionKind.Running)]
    [InlineData("Running", "LostCommunication", VmConditionKind.Unresponsive)]
    [InlineData("Off", null, VmConditionKind.Stopped)]
    [InlineData("Saved", null, VmConditionKind.Paused)]
    [InlineData("Paused", null, VmConditionKind.Paused)]
    [InlineData("OffCritical", null, VmConditionKind.Crashed)]
    [InlineData("RunningCritical", "LostCommunication", VmConditionKind.Crashed)]
    [InlineData("PausedCritical", null, VmConditionKind.PausedOnError)]
    public void HyperVStatesMapToConditions(string state, string? heartbeat, VmConditionKind expected)
    {
        var condition = HyperVHypervisor.Classify(state, heartbeat);
        Assert.Equal(expected, condition.Kind);
        // An administrator's stop is never something to repair.
        Assert.Equal(expected is VmConditionKind.Crashed or VmConditionKind.PausedOnError or VmConditionKind.Unresponsive, condition.NeedsHelp);
    }

    [Theory]
    [InlineData(@"C:\VMs\sql01\Virtual Hard Disks\sql01-os.vhdx", "sql01-os")]
    [InlineData(@"C:\VMs\sql01\Virtual Hard Disks\sql01-os_5C4A3B2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D.avhdx", "sql01-os")]
    [InlineData("/srv/vms/data disk.vhdx", "data disk")]
    [InlineData("/srv/vms/data_notaguid.avhdx", "data_notaguid")]
    public void DisksAreNamedAfterTheirBaseFileWhateverCheckpointChildTheVmRunsOn(string path, string expected)
    {
        Assert.Equal(expected, HyperVCheckpointSession.DiskName(path));
    }

    [Fact]
    public void ConfigurationRoundTripsAndIsToldApartFromDomainXml()
    {
        var c = new HyperVConfiguration
        {
            VmName = "sql01", VmId = "5c4a3b2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", Version = "9.0", Generation = 2,
            Vmcx = new byte[] { 0, 1, 2, 0xFE, 0xFF },
        };
        c.Disks.Add(new HyperVDiskSlot { Name = "sql01-os", Slot = "SCSI0:0", FileName = "sql01-os.vhdx" });
        string text = c.Serialize();

        Assert.True(HyperVConfiguration.IsHyperV(text));
        Assert.False(HyperVConfiguration.IsHyperV("<domain type='kvm'><name>web01</name></domain>"));
        Assert.False(HyperVConfiguration.IsHyperV(null));
        var back = HyperVConfiguration.Parse(text, "test");
        Assert.Equal(c.VmName, back.VmName);
        Assert.Equal(c.VmId, back.VmId);
        Assert.Equal(c.Vmcx, back.Vmcx);
        var disk = Assert.Single(back.Disks);
        Assert.Equal(("sql01-os", "SCSI0:0", "sql01-os.vhdx"), (disk.Name, disk.Slot, disk.FileName));
    }

    [Theory]
    [InlineData("{")]
    [InlineData("{\"kind\":\"HyperV.vmcx\",\"vmcx\":\"not base64!\"}")]
    [InlineData("{\"kind\":\"something else\"}")]
    [InlineData("[1,2,3]")]
    public void AHostileConfigurationIsInvalidData(string text)
    {
        Assert.Throws<InvalidDataException>(() => HyperVConfiguration.Parse(text, "checkpoint x"));
    }

    [Fact]
    public void OneCheckpointRunPerVmAtATimeAndADeadRunIsNoticed()
    {
        string id = "test-" + System.Guid.NewGuid().ToString("N");
        using (var first = VmRunLock.Take(id, "vm"))
        {
            Assert.False(first.PreviousRunDied);
            Assert.Throws<VmBusyException>(() => VmRunLock.Take(id, "vm"));
        }
        using (var second = VmRunLock.Take(id, "vm")) Assert.False(second.PreviousRunDied);

        // A run that died leaves its file saying "running".
        File.WriteAllText(Path.Combine(Path.GetTempPath(), "vmcheckpoint-locks", id + ".lock"), "R");
        using (var third = VmRunLock.Take(id, "vm")) Assert.True(third.PreviousRunDied);
        File.Delete(Path.Combine(Path.GetTempPath(), "vmcheckpoint-locks", id + ".lock"));
    }
}
