using System.Text;
using LiteDB;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Repository;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

public sealed class CheckpointManifestTests
{
    private const int Block = TestRepository.BlockSize;

    private static BlockHash Hash(int seed) => BlockHash.FromBytes(ImageFiles.Noise(seed, BlockHash.Size), 0);

    private static BlockTable Table(params long[] indexes) =>
        BlockTable.FromUnsorted(indexes.Select((x, i) => new KeyValuePair<long, BlockHash>(x, Hash(i + 1))).ToList());

    private static CheckpointManifest Sample(string diskName = "vda", BlockTable? blocks = null) => new()
    {
        VmName = "web01 (prod) é",
        Hypervisor = "Libvirt",
        Host = "hv1",
        VmId = "8d1e0c4e-0000-4000-8000-000000000001",
        StartTime = new DateTime(2024, 12, 30, 23, 59, 58, 123, DateTimeKind.Utc).AddTicks(4567),
        EndTime = new DateTime(2024, 12, 31, 0, 1, 2, DateTimeKind.Utc),
        ParentId = "0011223344556677",
        BlockSize = Block,
        Configuration = "<domain type='kvm'><name>web01</name></domain>",
        Note = "chain reset: \"parent\" unreadable",
        Statistics = new CheckpointStatistics { ReadBytes = 1, ChangedBytes = 2, NewBytes = 3, StoredBytes = 4, DurationSeconds = 1.25 },
        Disks =
        {
            new DiskManifest(diskName, "/var/lib/libvirt/images/web01.qcow2", DiskFormat.Qcow2, 10L * Block + 7, blocks ?? Table(10, 0, 3)),
            new DiskManifest("vdb", "/dev/null", DiskFormat.Raw, 1L << 40, BlockTable.Empty),
        },
    };

    private static CheckpointManifest Parse(byte[] content) => CheckpointManifest.Parse(content, CheckpointManifest.ComputeId(content), "test.json");

    /// <summary>Serializes <see cref="Sample"/>, lets <paramref name="edit"/> change the JSON document, and serializes it again.</summary>
    private static byte[] Edited(Action<BsonDocument> edit)
    {
        var doc = (BsonDocument)JsonSerializer.Deserialize(Encoding.UTF8.GetString(Sample().Serialize()));
        edit(doc);
        return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(doc));
    }

    private static BsonDocument FirstDisk(BsonDocument doc) => doc["disks"].AsArray[0].AsDocument;

    [Fact]
    public void SerializeAndParseRoundTrip()
    {
        var original = Sample();
        var content = original.Serialize();
        var parsed = Parse(content);

        Assert.Equal(CheckpointManifest.ComputeId(content), parsed.Id);
        Assert.Equal(16, parsed.Id.Length);
        Assert.Equal(original.VmName, parsed.VmName);
        Assert.Equal(original.Hypervisor, parsed.Hypervisor);
        Assert.Equal(original.Host, parsed.Host);
        Assert.Equal(original.VmId, parsed.VmId);
        Assert.Equal(original.StartTime, parsed.StartTime);
        Assert.Equal(DateTimeKind.Utc, parsed.StartTime.Kind);
        Assert.Equal(original.EndTime, parsed.EndTime);
        Assert.Equal(original.ParentId, parsed.ParentId);
        Assert.Equal(original.BlockSize, parsed.BlockSize);
        Assert.Equal(original.Configuration, parsed.Configuration);
        Assert.Equal(original.Note, parsed.Note);
        Assert.Equal(1.25, parsed.Statistics.DurationSeconds);
        Assert.Equal((1L, 2L, 3L, 4L), (parsed.Statistics.ReadBytes, parsed.Statistics.ChangedBytes, parsed.Statistics.NewBytes, parsed.Statistics.StoredBytes));
        Assert.Equal(2, parsed.Disks.Count);
        for (int d = 0; d < 2; d++)
        {
            Assert.Equal(original.Disks[d].Name, parsed.Disks[d].Name);
            Assert.Equal(original.Disks[d].SourcePath, parsed.Disks[d].SourcePath);
            Assert.Equal(original.Disks[d].SourceFormat, parsed.Disks[d].SourceFormat);
            Assert.Equal(original.Disks[d].VirtualSize, parsed.Disks[d].VirtualSize);
            var a = original.Disks[d].Blocks;
            var b = parsed.Disks[d].Blocks;
            Assert.Equal(Enumerable.Range(0, a.Count).Select(i => (a.IndexAt(i), a.HashAt(i))), Enumerable.Range(0, b.Count).Select(i => (b.IndexAt(i), b.HashAt(i))));
        }
        Assert.Equal(new long[] { 0, 3, 10 }, Enumerable.Range(0, 3).Select(parsed.Disks[0].Blocks.IndexAt));
        Assert.Equal(content, parsed.Serialize());

        var nulls = Parse(new CheckpointManifest { VmName = "x", Hypervisor = "Offline", BlockSize = Block, Disks = { new DiskManifest("d", "", DiskFormat.Raw, 1, BlockTable.Empty) } }.Serialize());
        Assert.Null(nulls.VmId);
        Assert.Null(nulls.ParentId);
        Assert.Null(nulls.Configuration);
        Assert.Null(nulls.Note);
    }

    public static TheoryData<string> HostileDiskNames => new() { "../x", "a/b", "a\\b", "", ".", "..", "c:", "a\0b", "tab\there", new string('n', 256) };

    [Theory]
    [MemberData(nameof(HostileDiskNames))]
    public void DiskNamesThatEscapeTheRestoreFolderAreRejected(string name)
    {
        var e = Assert.Throws<InvalidDataException>(() => Parse(Sample(diskName: name).Serialize()));
        Assert.Contains("test.json", e.Message);
    }

    [Fact]
    public void BlockTablesThatDoNotFitTheDiskAreRejected()
    {
        // The disk has 11 blocks (10 whole and a partial one): index 11 is outside.
        Assert.Throws<InvalidDataException>(() => Parse(Sample(blocks: Table(0, 11)).Serialize()));
        Assert.Throws<InvalidDataException>(() => Parse(Sample(blocks: Table(-1, 2)).Serialize()));
        // Unsorted and repeated indexes cannot come out of FromUnsorted: build the table directly.
        var unsorted = new BlockTable(new long[] { 5, 2 }, new[] { Hash(1), Hash(2) });
        Assert.Throws<InvalidDataException>(() => Parse(Sample(blocks: unsorted).Serialize()));
        var repeated = new BlockTable(new long[] { 2, 2 }, new[] { Hash(1), Hash(2) });
        Assert.Throws<InvalidDataException>(() => Parse(Sample(blocks: repeated).Serialize()));
        Parse(Sample(blocks: Table(0, 10)).Serialize()); // the partial last block is inside
    }

    public static TheoryData<string> HostileEdits => new()
    {
        "bad base64", "not zstd", "count too high", "count too low", "count negative", "count beyond the disk", "huge count",
        "format 2", "format string", "block size odd", "block size string", "size zero", "size huge", "unknown source format",
        "disk not an object", "no disks", "no vm", "vm name missing", "start not a time", "duplicate disk names", "stats string",
    };

    [Theory]
    [MemberData(nameof(HostileEdits))]
    public void HostileManifestsThrowInvalidData(string edit)
    {
        byte[] content = Edited(doc =>
        {
            var disk = FirstDisk(doc);
            switch (edit)
            {
                case "bad base64": disk["blocks"] = "!!not base64!!"; break;
                case "not zstd": disk["blocks"] = Convert.ToBase64String(ImageFiles.Noise(5, 100)); break;
                case "count too high": disk["blockCount"] = 4; break;
                case "count too low": disk["blockCount"] = 2; break;
                case "count negative": disk["blockCount"] = -1; break;
                case "count beyond the disk": disk["blockCount"] = 12; break;
                case "huge count": disk["virtualSize"] = 1L << 56; disk["blockCount"] = int.MaxValue; break;
                case "format 2": doc["format"] = 2; break;
                case "format string": doc["format"] = "one"; break;
                case "block size odd": doc["blockSize"] = 65535; break;
                case "block size string": doc["blockSize"] = "big"; break;
                case "size zero": disk["virtualSize"] = 0; break;
                case "size huge": disk["virtualSize"] = long.MaxValue; break;
                case "unknown source format": disk["sourceFormat"] = "vmdk"; break;
                case "disk not an object": doc["disks"].AsArray[0] = 5; break;
                case "no disks": doc.Remove("disks"); break;
                case "no vm": doc.Remove("vm"); break;
                case "vm name missing": doc["vm"].AsDocument.Remove("name"); break;
                case "start not a time": doc["startTime"] = "yesterday"; break;
                case "duplicate disk names": doc["disks"].AsArray[1].AsDocument["name"] = "VDA"; break;
                case "stats string": doc["statistics"].AsDocument["readBytes"] = "many"; break;
                default: throw new ArgumentException(edit);
            }
        });
        var e = Assert.Throws<InvalidDataException>(() => Parse(content));
        Assert.Contains("test.json", e.Message);
    }

    [Fact]
    public void ManifestWhoseContentNoLongerMatchesItsIdIsRejected()
    {
        using var t = new TestRepository();
        var saved = t.Repository.SaveCheckpoint(Sample());
        Assert.Equal(Sample().VmName, t.Repository.ReadCheckpoint(saved).VmName);

        var text = File.ReadAllText(saved.Path).Replace("hv1", "hv2"); // still a perfectly valid manifest
        File.WriteAllText(saved.Path, text);
        var e = Assert.Throws<InvalidDataException>(() => t.Repository.ReadCheckpoint(saved));
        Assert.Contains("checksum", e.Message);
        Parse(Encoding.UTF8.GetBytes(text)); // only the id gives it away
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void MutatedManifestsParseOrThrowInvalidData(int seed)
    {
        var original = Sample(blocks: Table(0, 1, 2, 5, 9)).Serialize();
        var random = new Random(seed);
        int parsed = 0;
        for (int iteration = 0; iteration < 300; iteration++)
        {
            var bytes = original.ToList();
            int mutations = 1 + random.Next(4);
            for (int m = 0; m < mutations && bytes.Count > 0; m++)
            {
                int at = random.Next(bytes.Count);
                switch (random.Next(5))
                {
                    case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                    case 1: bytes[at] = (byte)"0123456789-\"{}[],:.eE"[random.Next(21)]; break;
                    case 2: bytes.RemoveRange(at, Math.Min(bytes.Count - at, 1 + random.Next(16))); break;
                    case 3: bytes.InsertRange(at, bytes.Skip(random.Next(bytes.Count)).Take(1 + random.Next(16)).ToList()); break;
                    default: bytes.RemoveRange(at, bytes.Count - at); break;
                }
            }
            var content = bytes.ToArray();
            try
            {
                var m = Parse(content);
                Assert.NotEmpty(m.Disks);
                parsed++;
            }
            catch (InvalidDataException)
            {
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed}, iteration {iteration}: {e.GetType().Name}: {e.Message}\n{Encoding.UTF8.GetString(content)}");
            }
        }
        Assert.InRange(parsed, 0, 299); // mutations must reject most of them
    }
}
