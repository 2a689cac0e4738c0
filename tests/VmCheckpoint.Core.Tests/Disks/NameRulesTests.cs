using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors;
using VmCheckpoint.Core.Tests.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Disk and VM names are checked before anything is written, and every disk name that checkpoints restores.</summary>
public sealed class NameRulesTests
{
    [Theory]
    [InlineData("")]
    [InlineData(".")]
    [InlineData("..")]
    [InlineData("a/b")]
    [InlineData("a\\b")]
    [InlineData("c:d")]
    [InlineData("what?")]
    [InlineData("star*")]
    [InlineData("tab\tname")]
    [InlineData("trailing.")]
    [InlineData("trailing ")]
    [InlineData("CON")]
    [InlineData("nul.disk")]
    public void RefusesNamesThatAreNotFileNamesEverywhere(string name)
    {
        Assert.NotNull(DiskNames.Problem(name));
        var e = Assert.Throws<InvalidDataException>(() => DiskNames.Validate(name, "/images/x"));
        Assert.Contains("/images/x", e.Message);
    }

    [Fact]
    public void RefusesANameLongerThanRestoresCanWrite()
    {
        Assert.Null(DiskNames.Problem(new string('d', DiskNames.MaxUtf8Bytes)));
        Assert.NotNull(DiskNames.Problem(new string('d', DiskNames.MaxUtf8Bytes + 1)));
        Assert.NotNull(DiskNames.Problem(new string('é', DiskNames.MaxUtf8Bytes / 2 + 1))); // bytes, not characters
    }

    [Fact]
    public void TheLongestNameCheckpointsAndRestores()
    {
        using var t = new TestRepository();
        string name = new string('d', DiskNames.MaxUtf8Bytes);
        string image = t.File(name + ".raw");
        var data = ImageFiles.CreateRaw(image, 256 * 1024, (1000, new byte[] { 9, 8, 7 }));

        var m = t.Checkpoint("vm", image);

        Assert.Equal(data, t.Restore(m.Id, name, DiskFormat.Qcow2));
    }

    [Fact]
    public void AHugeDiskNameIsRefusedBeforeAnythingIsStored()
    {
        using var t = new TestRepository();
        string image = t.File(new string('d', 240) + ".raw");
        ImageFiles.CreateRaw(image, 65536);
        Assert.Throws<InvalidDataException>(() => t.Checkpoint("vm", image));
        Assert.Empty(t.Repository.ListCheckpoints());
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("tab\there")]
    [InlineData("line\nbreak")]
    public void RefusesVmNamesThatCannotBeStored(string name)
    {
        Assert.NotNull(VmNames.Problem(name));
        Assert.Throws<ArgumentException>(() => VmNames.Validate(name));
    }

    [Fact]
    public void VmNamesMayHoldSpacesAndPunctuation()
    {
        Assert.Null(VmNames.Problem("SQL Server 2019 (prod) #1"));
        Assert.NotNull(VmNames.Problem(new string('w', VmNames.MaxUtf8Bytes + 1)));
    }
}
