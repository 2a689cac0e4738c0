using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Who holds a file open: found in /proc, with the VM named from qemu's command line.</summary>
public sealed class FileUsersTests
{
    [Theory]
    [InlineData("guest=web01,debug-threads=on", "web01")]
    [InlineData("guest=a,,b,debug-threads=on", "a,b")]
    [InlineData("plain", "plain")]
    [InlineData("guest=it's a \"vm\"", "it's a \"vm\"")]
    public void ReadsTheVmNameFromQemusNameArgument(string argument, string expected)
    {
        Assert.Equal(expected, FileUsers.GuestName(argument));
    }

    [Fact]
    public void FindsAProcessHoldingAFileForWritingAndNoneOnceItIsGone()
    {
        using var temp = new TempFolder();
        string path = temp.File("held.img");
        File.WriteAllBytes(path, new byte[4096]);
        Assert.Empty(FileUsers.Of(path));

        using var holder = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sh", $"-c \"exec 3<>'{path}'; read x\"")
        {
            RedirectStandardInput = true,
            UseShellExecute = false,
        })!;
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            List<FileUser> users;
            while ((users = FileUsers.Of(path)).Count == 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            var user = Assert.Single(users);
            Assert.Equal(holder.Id, user.ProcessId);
            Assert.True(user.Writing);
            Assert.Null(user.VmName);
            var e = Assert.Throws<DiskInUseException>(() => FileUsers.EnsureNotInUse(path, writersOnly: true, u => $"held by {u}"));
            Assert.Equal(path, e.ImagePath);
        }
        finally
        {
            holder.StandardInput.WriteLine("x");
            holder.WaitForExit(10_000);
        }
        Assert.Empty(FileUsers.Of(path));
    }

    [Fact]
    public void AReaderIsNotAWriter()
    {
        using var temp = new TempFolder();
        string path = temp.File("read.img");
        File.WriteAllBytes(path, new byte[4096]);
        using var holder = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("sh", $"-c \"exec 3<'{path}'; read x\"")
        {
            RedirectStandardInput = true,
            UseShellExecute = false,
        })!;
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (FileUsers.Of(path).Count == 0 && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Assert.False(Assert.Single(FileUsers.Of(path)).Writing);
            FileUsers.EnsureNotInUse(path, writersOnly: true, u => "not thrown");
            Assert.Throws<DiskInUseException>(() => FileUsers.EnsureNotInUse(path, writersOnly: false, u => "a reader holds it"));
        }
        finally
        {
            holder.StandardInput.WriteLine("x");
            holder.WaitForExit(10_000);
        }
    }
}
