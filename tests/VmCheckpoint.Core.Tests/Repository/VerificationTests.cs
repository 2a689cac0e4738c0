using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// Verification with data read checks every object of the repository, not only the blocks checkpoints use: index files
/// against their checksums and the packs' trailers, each pack's header, layout, checksum and trailer. Repositories
/// written before packs and configurations had checksums still read and verify.
/// </summary>
public sealed class VerificationTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;

    private static RepositoryProblem Single(VerificationReport report, RepositoryObjectKind kind)
    {
        var problem = Assert.Single(report.Problems);
        Assert.Equal(kind, problem.ObjectKind);
        return problem;
    }

    [Fact]
    public void AHealthyRepositoryReadsEveryByteOfEveryPackOnce()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        var report = t.VerifyAll();
        Assert.True(report.Healthy);
        Assert.True(report.WholeRepository);
        Assert.Equal(3, report.PacksChecked);
        Assert.Equal(3, report.IndexFilesChecked);
        Assert.Empty(report.Notes);
        // Every byte before the trailer, once (the trailer itself is a few small reads more).
        long beforeTrailers = t.PackFiles().Sum(p => new FileInfo(p).Length - TestRepository.PackEntries(p).Count * PackFormat.EntrySize - PackFormat.FooterSize - PackFormat.ChecksumSize);
        Assert.InRange(report.BytesRead, beforeTrailers, beforeTrailers + 3 * 4096);
    }

    [Fact]
    public void ADamagedIndexFileIsReportedThoughEveryCheckpointIsHealthy()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        string index = t.IndexFiles()[1];
        TestRepository.FlipByte(index, 30, 0x04);

        foreach (bool readData in new[] { false, true })
        {
            var report = t.VerifyAll(readData);
            Assert.All(report.Checkpoints, c => Assert.Equal(VerificationStatus.Healthy, c.State));
            var problem = Single(report, RepositoryObjectKind.Index);
            Assert.Equal(index, problem.Path);
            Assert.Contains("checksum", problem.Message);
            Assert.Contains("Repair-VmCheckpointRepository", problem.Message);
            Assert.False(report.Healthy);
            Assert.Contains(report.Notes, n => n.Contains("in no index file"));
        }
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));
    }

    [Fact]
    public void AnIndexThatListsAPackOtherwiseThanItsTrailerIsReported()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        // An index with a valid checksum whose entries of one pack have two hashes swapped (a bug, not bit rot).
        string index = t.IndexFiles().OrderBy(f => f).First();
        var packs = IndexFile.Parse(File.ReadAllBytes(index), index);
        var (packId, entries) = packs.First(p => p.Value.Count >= 2);
        var a = entries[0];
        var b = entries[1];
        entries[0] = new PackEntry(b.Hash, a.Offset, a.StoredLength, a.RawLength, a.Compression);
        entries[1] = new PackEntry(a.Hash, b.Offset, b.StoredLength, b.RawLength, b.Compression);
        File.Delete(index);
        File.WriteAllBytes(index, IndexFile.Serialize(packs.ToDictionary(p => p.Key, p => (IReadOnlyList<PackEntry>)p.Value)));

        var report = t.VerifyAll();
        Assert.Contains(report.Problems, p => p.ObjectKind == RepositoryObjectKind.Index && p.Path == index && p.Message.Contains(packId));
        Assert.DoesNotContain(report.Problems, p => p.ObjectKind == RepositoryObjectKind.Pack);
        // The store reads those two blocks where that index says: as a restore would, verification finds them wrong.
        Assert.Contains(report.Checkpoints, c => c.CorruptBlocks > 0);

        var repair = t.Repair();
        Assert.Equal(new[] { t.Layout.IndexName(RepositoryLayout.IdFromName(index)) }, repair.MismatchedIndexFiles);
        Assert.True(t.VerifyAll().Healthy);
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));
    }

    [Theory]
    [InlineData(9, 0x01)]   // the version
    [InlineData(12, 0x02)]  // the flags: an unknown one
    [InlineData(12, 0x01)]  // the flags: the checksum taken away
    [InlineData(3, 0x20)]   // the magic
    public void ADamagedPackHeaderIsReported(int offset, byte mask)
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        string pack = t.PackFiles().OrderBy(p => p).First();
        TestRepository.FlipByte(pack, offset, mask);
        var problem = Single(t.VerifyAll(), RepositoryObjectKind.Pack);
        Assert.Equal(pack, problem.Path);
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk)); // blocks do not need the header
    }

    [Fact]
    public void ABitNoZstdDecoderReadsIsFoundByThePackChecksum()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        string pack = t.PackFiles().First(p => TestRepository.PackEntries(p).Any(e => e.Compression == BlobCompression.Zstd));
        var frame = TestRepository.PackEntries(pack).First(e => e.Compression == BlobCompression.Zstd);
        // The frame header descriptor's unused bit (RFC 8878 3.1.1.1.1.4): "a decoder ... shall not interpret this bit".
        TestRepository.FlipByte(pack, frame.Offset + 4, 0x10);

        using (var store = t.Repository.OpenStore(CancellationToken.None))
        using (var reader = new BlockReader(store, t.Layout))
            Assert.Equal(frame.RawLength, reader.Read(frame.Hash, new byte[Block])); // the block itself reads back right
        var report = t.VerifyAll();
        var problem = Single(report, RepositoryObjectKind.Pack);
        Assert.Contains("checksum", problem.Message);
        Assert.All(report.Checkpoints, c => Assert.Equal(VerificationStatus.Healthy, c.State));
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));
    }

    [Fact]
    public void PacksWrittenBeforePacksHadAChecksumStillReadAndVerify()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        foreach (var pack in t.PackFiles()) RewriteWithoutChecksum(pack);
        Assert.All(t.PackFiles(), p => Assert.Equal(0, File.ReadAllBytes(p)[12]));
        foreach (var index in t.IndexFiles()) File.Delete(index); // the old layout's offsets are those of the new: only the trailers say so

        var report = t.VerifyAll();
        Assert.Empty(report.Problems);
        Assert.True(report.Healthy);
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));

        // A byte of a blob, of an old pack's trailer, and its footer's count: found as before.
        string victim = t.PackFiles().OrderBy(p => p).First();
        long length = new FileInfo(victim).Length;
        foreach (long offset in new long[] { PackFormat.HeaderSize + 5, length - PackFormat.FooterSize - 3, length - 10 })
        {
            TestRepository.FlipByte(victim, offset, 0x08);
            Assert.False(t.VerifyAll().Healthy, $"byte {offset}");
            TestRepository.FlipByte(victim, offset, 0x08);
        }
    }

    /// <summary>Rewrites a pack as a version 1 pack was written before the checksum: flags 0, no checksum before the trailer.</summary>
    private static void RewriteWithoutChecksum(string pack)
    {
        var bytes = File.ReadAllBytes(pack);
        var entries = TestRepository.PackEntries(pack);
        long blobsEnd = entries.Max(e => e.Offset + e.StoredLength);
        var old = new byte[bytes.Length - PackFormat.ChecksumSize];
        Buffer.BlockCopy(bytes, 0, old, 0, (int)blobsEnd);
        Buffer.BlockCopy(bytes, (int)blobsEnd + PackFormat.ChecksumSize, old, (int)blobsEnd, bytes.Length - (int)blobsEnd - PackFormat.ChecksumSize);
        BinaryPrimitives.WriteUInt32LittleEndian(old.AsSpan(12), 0);
        File.Delete(pack);
        File.WriteAllBytes(pack, old);
    }

    [Fact]
    public void AConfigurationWithoutChecksumIsReadWhenItHoldsOnlyTheFieldsItHadThen()
    {
        using var t = new TestRepository();
        string config = t.Layout.ConfigPath;
        string id = t.Repository.Id;
        string legacy = "{\n  \"format\": 1,\n  \"id\": \"" + id + "\",\n  \"blockSize\": 65536,\n  \"hash\": \"sha256\",\n  \"compression\": \"zstd\",\n  \"created\": \"2026-11-01T10:00:00.0000000Z\"\n}";
        File.Delete(config);
        File.WriteAllText(config, legacy);
        var opened = CheckpointRepository.Open(t.Folder.Root);
        Assert.Equal(id, opened.Id);
        Assert.Equal(Block, opened.BlockSize);

        // A checksum field whose name lost a bit is not taken for a configuration without one.
        File.Delete(config);
        File.WriteAllText(config, legacy.Replace("\n}", ",\n  \"checksuM\": \"" + new string('0', 64) + "\"\n}"));
        Assert.Contains("damaged", Assert.Throws<InvalidDataException>(() => CheckpointRepository.Open(t.Folder.Root)).Message);
    }

    [Fact]
    public void ANewConfigurationCarriesAChecksumOfItsOwnBytes()
    {
        using var t = new TestRepository();
        string text = File.ReadAllText(t.Layout.ConfigPath);
        Assert.Matches("\"checksum\": \"[0-9a-f]{64}\"", text);
        // Even a change JSON does not see (a space turned into a tab) is refused.
        string config = t.Layout.ConfigPath;
        int space = text.IndexOf(' ');
        TestRepository.FlipByte(config, Encoding.UTF8.GetByteCount(text.Substring(0, space)), 0x20 ^ 0x09);
        Assert.Throws<InvalidDataException>(() => CheckpointRepository.Open(t.Folder.Root));
    }

    [Fact]
    public void ALostIndexIsANoteAndTheRepositoryStaysHealthy()
    {
        var (t, expected) = FlippedByteTests.Scene();
        using var owner = t;
        File.Delete(t.IndexFiles().OrderBy(f => f).First());
        var report = t.VerifyAll(readData: false);
        Assert.True(report.Healthy);
        Assert.Contains(report.Notes, n => n.StartsWith("1 pack(s) are in no index file", StringComparison.Ordinal));
        foreach (var (id, (disk, content)) in expected) Assert.Equal(content, t.Restore(id, disk));
    }

    [Fact]
    public void VerifyingSomeCheckpointsReadsOnlyTheBlocksTheyUse()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        var whole = t.VerifyAll();
        var vmB = t.Repository.ListCheckpoints("vm-b");
        var some = new VerifyJob(t.Repository, null).Verify(vmB, readData: true);
        Assert.False(some.WholeRepository);
        Assert.True(some.Healthy);
        Assert.Single(some.Checkpoints);
        Assert.InRange(some.BytesRead, 1, whole.BytesRead / 2);

        // Damage elsewhere is not its business; damage in its own blocks is.
        string packOfA = t.PackFiles().First(p => TestRepository.PackEntries(p).All(e => !BlocksOf(t, "vm-b").Contains(e.Hash)));
        TestRepository.FlipByte(packOfA, PackFormat.HeaderSize + 1, 0x01);
        Assert.True(new VerifyJob(t.Repository, null).Verify(vmB, readData: true).Healthy);
        Assert.False(t.VerifyAll().Healthy);
    }

    private static HashSet<BlockHash> BlocksOf(TestRepository t, string vm)
    {
        var set = new HashSet<BlockHash>();
        foreach (var f in t.Repository.ListCheckpoints(vm))
            foreach (var d in t.Repository.ReadCheckpoint(f).AllBlockLists)
                for (int i = 0; i < d.Blocks.Count; i++) set.Add(d.Blocks.HashAt(i));
        return set;
    }

    [Fact]
    public void ADamagedConfigurationIsRefusedAtOpenAndReportedByARunningVerification()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        TestRepository.FlipByte(t.Layout.ConfigPath, 40, 0x01);
        Assert.Throws<InvalidDataException>(() => CheckpointRepository.Open(t.Folder.Root));
        // The repository opened before the damage: its verification reads the configuration again.
        var problem = Single(t.VerifyAll(readData: false), RepositoryObjectKind.Configuration);
        Assert.Equal(RepositoryLayout.ConfigName, problem.Name);
    }

    [Fact]
    public void TheJobLogSaysWhatWasDamaged()
    {
        var (t, _) = FlippedByteTests.Scene();
        using var owner = t;
        using var catalog = new CheckpointCatalog(t.File("catalog.db"));
        new VerifyJob(t.Repository, catalog).Verify(t.Repository.ListCheckpoints(), readData: true);
        TestRepository.FlipByte(t.IndexFiles()[0], 12, 0x80);
        new VerifyJob(t.Repository, catalog).Verify(t.Repository.ListCheckpoints(), readData: true);
        var jobs = catalog.GetJobs(_ => true).OrderBy(j => j.Start).ToList();
        Assert.Equal(new[] { "VerifyData", "VerifyData" }, jobs.Select(j => j.Kind));
        Assert.Equal(JobResult.Succeeded, jobs[0].Outcome);
        Assert.Equal(JobResult.Failed, jobs[1].Outcome);
        Assert.Contains("Index index/", jobs[1].Error);
        Assert.Empty(Directory.GetFiles(t.Layout.LocksDirectory));
    }
}
