using VmCheckpoint.Core.Repository.Backends;
using VmCheckpoint.Core.Tests.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>What IRepositoryBackend promises, checked on the folder backend (the samba tests check it on a real share).</summary>
public sealed class LocalFolderBackendTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly LocalFolderBackend _backend;

    public LocalFolderBackendTests()
    {
        _backend = new LocalFolderBackend(_temp.File("repo"));
        _backend.CreateLocation(new[] { "packs/", "locks/" });
    }

    public void Dispose() => _temp.Dispose();

    private string[] FilesOnDisk() =>
        Directory.GetFiles(_backend.Root, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(_backend.Root, f).Replace('\\', '/')).OrderBy(f => f).ToArray();

    [Fact]
    public void AnObjectIsPutWholeAndOnce()
    {
        var content = ImageFiles.Noise(1, 100_000);
        _backend.Put("packs/ab/x.pack", content);
        Assert.Equal(content, _backend.ReadAll("packs/ab/x.pack"));
        Assert.Equal(content.Length, _backend.GetInfo("packs/ab/x.pack")!.Length);

        Assert.Throws<ObjectExistsException>(() => _backend.Put("packs/ab/x.pack", new byte[] { 1, 2, 3 }));
        Assert.Equal(content, _backend.ReadAll("packs/ab/x.pack"));
        Assert.Equal(new[] { "packs/ab/x.pack" }, FilesOnDisk()); // no temporary left by either put
    }

    [Fact]
    public void AWriteIsInvisibleUntilCommittedAndLeavesNothingWhenDropped()
    {
        using (var writer = _backend.OpenWrite("packs/cd/y.pack"))
        {
            writer.Write(ImageFiles.Noise(2, 5000), 0, 5000);
            Assert.Equal(5000, writer.Length);
            Assert.Null(_backend.GetInfo("packs/cd/y.pack"));
            Assert.Throws<ObjectNotFoundException>(() => _backend.OpenRead("packs/cd/y.pack"));
            Assert.Empty(_backend.List(""));
            Assert.Single(FilesOnDisk(), f => f.EndsWith(".tmp")); // the temporary, which nobody lists
        }
        Assert.Empty(FilesOnDisk());

        using (var writer = _backend.OpenWrite("packs/cd/y.pack"))
        {
            writer.Write(new byte[] { 7, 8, 9 }, 1, 2);
            writer.Commit();
            Assert.Throws<InvalidOperationException>(() => writer.Write(new byte[1], 0, 1));
        }
        Assert.Equal(new byte[] { 8, 9 }, _backend.ReadAll("packs/cd/y.pack"));
        Assert.Equal(new[] { "packs/cd/y.pack" }, FilesOnDisk());
    }

    [Fact]
    public void CommittingOverAnExistingObjectFailsAndLeavesIt()
    {
        _backend.Put("locks/a.lock", new byte[] { 1 });
        using (var writer = _backend.OpenWrite("locks/a.lock"))
        {
            writer.Write(new byte[] { 2, 2 }, 0, 2);
            Assert.Throws<ObjectExistsException>(() => writer.Commit());
        }
        Assert.Equal(new byte[] { 1 }, _backend.ReadAll("locks/a.lock"));
        Assert.Equal(new[] { "locks/a.lock" }, FilesOnDisk());
    }

    [Fact]
    public void ARangeIsReadThroughOneOpenHandleAndStopsAtTheEnd()
    {
        var content = ImageFiles.Noise(3, 10_000);
        _backend.Put("packs/00/z.pack", content);
        using var reader = _backend.OpenRead("packs/00/z.pack");
        Assert.Equal(content.Length, reader.Length);
        var buffer = new byte[4000];
        Assert.Equal(3000, reader.ReadAt(2000, buffer, 500, 3000));
        Assert.Equal(content.AsSpan(2000, 3000).ToArray(), buffer.AsSpan(500, 3000).ToArray());
        Assert.Equal(1000, reader.ReadAt(9000, buffer, 0, 4000));
        Assert.Equal(0, reader.ReadAt(10_000, buffer, 0, 10));
        // Deleted while open (a prune meanwhile): the open handle still reads what it opened, on Unix and Windows alike.
        _backend.Delete("packs/00/z.pack");
        Assert.Equal(10, reader.ReadAt(0, buffer, 0, 10));
    }

    [Fact]
    public void OnlyAMissingObjectOrFolderIsAnAnswer()
    {
        Assert.Null(_backend.GetInfo("packs/ff/none.pack"));
        Assert.Null(_backend.GetInfo("nowhere/none"));
        Assert.Throws<ObjectNotFoundException>(() => _backend.OpenRead("nowhere/none"));
        Assert.Empty(_backend.List("nowhere/"));
        Assert.Empty(_backend.List("packs/ff/"));
        _backend.Delete("packs/ff/none.pack");
        _backend.Delete("nowhere/none");
        Assert.True(_backend.LocationExists());
        Assert.False(new LocalFolderBackend(_temp.File("absent")).LocationExists());
        Assert.Empty(new LocalFolderBackend(_temp.File("absent")).List(""));
    }

    [Fact]
    public void AFolderThatCannotBeReadIsAnErrorNeverEmpty()
    {
        if (OperatingSystem.IsWindows()) return; // a symbolic link to itself stands in for a share answering EIO
        _backend.Put("packs/ab/x.pack", new byte[] { 1 });
        string packs = Path.Combine(_backend.Root, "packs");
        Directory.Move(packs, packs + ".away");
        Directory.CreateSymbolicLink(packs, packs);
        try
        {
            Assert.ThrowsAny<IOException>(() => _backend.List("packs/"));
            Assert.ThrowsAny<IOException>(() => _backend.List("packs/ab/"));
            Assert.ThrowsAny<IOException>(() => _backend.GetInfo("packs/ab/x.pack"));
            Assert.IsNotType<ObjectNotFoundException>(Assert.ThrowsAny<IOException>(() => _backend.OpenRead("packs/ab/x.pack")));
            Assert.ThrowsAny<IOException>(() => _backend.Delete("packs/ab/x.pack"));
        }
        finally
        {
            File.Delete(packs);
            Directory.Move(packs + ".away", packs);
        }
        Assert.Single(_backend.List("packs/"));
    }

    [Fact]
    public void AListingFindsEveryObjectUnderAPrefixAndNoTemporary()
    {
        foreach (var name in new[] { "packs/ab/1.pack", "packs/cd/2.pack", "index/3.idx", "checkpoints/k/t_4.json", "config" })
            _backend.Put(name, new byte[] { 1 });
        File.WriteAllBytes(Path.Combine(_backend.Root, "packs", "ab", "5.pack.a1b2c3.tmp"), new byte[] { 1 });

        string[] Names(string prefix) => _backend.List(prefix).Select(o => o.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray();
        Assert.Equal(new[] { "packs/ab/1.pack", "packs/cd/2.pack" }, Names("packs/"));
        Assert.Equal(new[] { "packs/ab/1.pack" }, Names("packs/ab/"));
        Assert.Equal(new[] { "packs/ab/1.pack", "packs/cd/2.pack" }, Names("pa"));
        Assert.Equal(new[] { "checkpoints/k/t_4.json" }, Names("checkpoints/k/t"));
        Assert.Equal(5, Names("").Length);
    }

    [Fact]
    public void NamesStayInsideTheFolder()
    {
        foreach (var bad in new[] { "", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", "a/", "a\\b", "c:x", "packs/x.pack.abc.tmp" })
            Assert.Throws<ArgumentException>(() => _backend.Put(bad, new byte[] { 1 }));
        foreach (var bad in new[] { "/", "../", "a//", "a/../" })
            Assert.Throws<ArgumentException>(() => _backend.List(bad));
        Assert.Empty(Directory.GetFiles(_temp.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void OnlyOldLeftoversOfWritesAreRemoved()
    {
        _backend.Put("packs/ab/1.pack", new byte[] { 1 });
        string old = Path.Combine(_backend.Root, "packs", "ab", "2.pack.a1b2c3.tmp");
        string fresh = Path.Combine(_backend.Root, "locks", "3.lock.d4e5f6.tmp");
        File.WriteAllBytes(old, new byte[] { 1 });
        File.WriteAllBytes(fresh, new byte[] { 1 });
        File.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddDays(-2));

        Assert.Equal(1, _backend.RemoveAbandoned(TimeSpan.FromDays(1)));
        Assert.Equal(new[] { "locks/3.lock.d4e5f6.tmp", "packs/ab/1.pack" }, FilesOnDisk());
        Assert.Equal(0, new LocalFolderBackend(_temp.File("absent")).RemoveAbandoned(TimeSpan.Zero));
    }

    [Fact]
    public void ANewLocationMustHoldNothing()
    {
        Assert.True(Directory.Exists(Path.Combine(_backend.Root, "packs")));
        Assert.True(Directory.Exists(Path.Combine(_backend.Root, "locks")));
        Assert.Throws<LocationNotEmptyException>(() => _backend.CreateLocation(new[] { "index/" })); // holds packs/ and locks/
        var other = new LocalFolderBackend(_temp.File("other") + Path.DirectorySeparatorChar);
        other.CreateLocation(Array.Empty<string>());
        Assert.True(other.LocationExists());
        other.Put("a/b", new byte[] { 1 });
        Assert.Equal(Path.Combine(_temp.File("other"), "a", "b"), other.Locate("a/b"));
        Assert.Equal(new[] { "a/b" }, other.List("").Select(o => o.Name));
    }
}
