using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Repository.Backends;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>What IRepositoryBackend promises, checked on S3Backend against a real radosgw (no mock, no fake).</summary>
public sealed class S3BackendTests
{
    private readonly S3Backend _backend = S3Gateway.Instance.NewBackend();

    [Fact]
    public void AnObjectIsPutWholeAndOnce()
    {
        var content = ImageFiles.Noise(1, 100_000);
        _backend.Put("packs/ab/x.pack", content);
        Assert.Equal(content, _backend.ReadAll("packs/ab/x.pack"));
        Assert.Equal(content.Length, _backend.GetInfo("packs/ab/x.pack")!.Length);

        // radosgw honours If-None-Match: * on PUT (412): the second put fails and the first object stays.
        Assert.Throws<ObjectExistsException>(() => _backend.Put("packs/ab/x.pack", new byte[] { 1, 2, 3 }));
        Assert.Equal(content, _backend.ReadAll("packs/ab/x.pack"));
    }

    [Fact]
    public void ALargeWriteIsAMultipartUploadInvisibleUntilCommitted()
    {
        var content = ImageFiles.Noise(2, S3Backend.PartSize * 3 + 12345);
        using (var writer = _backend.OpenWrite("packs/cd/big.pack"))
        {
            for (int offset = 0; offset < content.Length; offset += 1_000_000)
                writer.Write(content, offset, Math.Min(1_000_000, content.Length - offset));
            Assert.Equal(content.Length, writer.Length);
            Assert.Null(_backend.GetInfo("packs/cd/big.pack"));
            Assert.Empty(_backend.List(""));
            writer.Commit();
        }
        Assert.Equal(content, _backend.ReadAll("packs/cd/big.pack"));
        Assert.Equal(0, _backend.RemoveAbandoned(TimeSpan.Zero)); // the upload completed: nothing left behind

        using (var again = _backend.OpenWrite("packs/cd/big.pack"))
        {
            again.Write(content, 0, S3Backend.PartSize + 1);
            Assert.Throws<ObjectExistsException>(() => again.Commit());
        }
        Assert.Equal(content, _backend.ReadAll("packs/cd/big.pack"));
    }

    [Fact]
    public void AWriteDroppedUncommittedLeavesNothing()
    {
        var content = ImageFiles.Noise(3, S3Backend.PartSize * 2 + 1);
        using (var writer = _backend.OpenWrite("packs/ef/dropped.pack"))
            writer.Write(content, 0, content.Length);
        Assert.Null(_backend.GetInfo("packs/ef/dropped.pack"));
        Assert.Empty(_backend.List(""));
        Assert.Equal(0, _backend.RemoveAbandoned(TimeSpan.Zero)); // the upload was aborted at dispose
    }

    [Fact]
    public void RangesAreReadThroughOneOpenHandleAndStopAtTheEnd()
    {
        var content = ImageFiles.Noise(4, 3_000_000);
        _backend.Put("packs/aa/r.pack", content);
        using var reader = _backend.OpenRead("packs/aa/r.pack");
        Assert.Equal(content.Length, reader.Length);
        var buffer = new byte[100_000];
        // In order (served from the window fetched ahead), then back and forth, then past the end.
        for (long offset = 0; offset < 1_000_000; offset += buffer.Length)
        {
            Assert.Equal(buffer.Length, reader.ReadAt(offset, buffer, 0, buffer.Length));
            Assert.Equal(content.AsSpan((int)offset, buffer.Length).ToArray(), buffer);
        }
        Assert.Equal(10, reader.ReadAt(12, buffer, 5, 10));
        Assert.Equal(content.AsSpan(12, 10).ToArray(), buffer.AsSpan(5, 10).ToArray());
        Assert.Equal(1000, reader.ReadAt(content.Length - 1000, buffer, 0, buffer.Length));
        Assert.Equal(0, reader.ReadAt(content.Length, buffer, 0, 10));
    }

    [Fact]
    public void OnlyAMissingObjectIsAnAnswer()
    {
        Assert.Null(_backend.GetInfo("index/none.idx"));
        Assert.Throws<ObjectNotFoundException>(() => _backend.OpenRead("index/none.idx"));
        _backend.Delete("index/none.idx");
        Assert.Empty(_backend.List("index/"));

        var missingBucket = S3Backend.Connect(S3Location.Parse($"s3://xunit-gone-{Guid.NewGuid():N}".Substring(0, 30)),
            new S3Settings(S3Gateway.Instance.Endpoint, null), S3Gateway.Instance.Credentials);
        Assert.False(missingBucket.LocationExists());
        var e = Assert.ThrowsAny<IOException>(() => missingBucket.List("checkpoints/"));
        Assert.Contains("does not exist", e.Message);

        var wrongKeys = S3Backend.Connect(_backend.Where, new S3Settings(S3Gateway.Instance.Endpoint, null),
            new Amazon.Runtime.BasicAWSCredentials("NOSUCHKEY", "nosuchsecret"));
        var denied = Assert.Throws<UnauthorizedAccessException>(() => wrongKeys.List("checkpoints/"));
        Assert.Contains("AWS_ACCESS_KEY_ID", denied.Message);
    }

    [Fact]
    public void AListingFindsEveryObjectUnderAPrefixAcrossPages()
    {
        for (int i = 0; i < 1005; i++) _backend.Put($"locks/{i:D4}.lock", new byte[] { (byte)i });
        _backend.Put("checkpoints/k/1.json", new byte[] { 1 });
        var locks = _backend.List("locks/");
        Assert.Equal(1005, locks.Count);
        Assert.All(locks, o => Assert.Equal(1, o.Length));
        Assert.Equal(1006, _backend.List("").Count);
        foreach (var o in locks) _backend.Delete(o.Name);
        Assert.Empty(_backend.List("locks/")); // read after write: deletes show at once
        Assert.Single(_backend.List(""));
    }

    [Fact]
    public void ANewLocationMustHoldNothingAndTheBucketIsMadeWhenMissing()
    {
        _backend.Put("x/y", new byte[] { 1 });
        var again = S3Backend.Connect(_backend.Where, new S3Settings(S3Gateway.Instance.Endpoint, null), S3Gateway.Instance.Credentials);
        Assert.Throws<LocationNotEmptyException>(() => again.CreateLocation(Array.Empty<string>()));
        var beside = S3Backend.Connect(S3Location.Parse(_backend.Where + "-beside"), new S3Settings(S3Gateway.Instance.Endpoint, null), S3Gateway.Instance.Credentials);
        beside.CreateLocation(Array.Empty<string>()); // another prefix of the same bucket is free
        Assert.True(beside.LocationExists());
    }

    [Fact]
    public void ARepositoryLivesInABucketAndSeesItsLocks()
    {
        var repository = CheckpointRepository.Create(_backend);
        var opened = CheckpointRepository.Open(S3Backend.Connect(_backend.Where, new S3Settings(S3Gateway.Instance.Endpoint, null), S3Gateway.Instance.Credentials));
        Assert.Equal(repository.Id, opened.Id);
        Assert.Equal(_backend.Location, opened.Path);
        using (var shared = repository.Lock(LockKind.Shared, TimeSpan.Zero, CancellationToken.None))
        {
            Assert.Throws<RepositoryLockedException>(() => opened.Lock(LockKind.Exclusive, TimeSpan.FromSeconds(1), CancellationToken.None));
        }
        using (opened.Lock(LockKind.Exclusive, TimeSpan.Zero, CancellationToken.None)) { }
        Assert.Empty(_backend.List("locks/"));
    }
}
