using System.Text;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using Xunit;
using Xunit.Abstractions;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// Every stored byte is covered: one byte flipped anywhere in the configuration, a pack, an index file or a manifest is
/// found by verification with data read (or refuses the repository at open), and no restore ever writes a wrong byte.
/// </summary>
public sealed class FlippedByteTests
{
    private const int Block = TestRepository.BlockSize;
    private const long MiB = 1024 * 1024;
    private readonly ITestOutputHelper _output;

    public FlippedByteTests(ITestOutputHelper output)
    {
        _output = output;
    }

    /// <summary>Compressible, yet different for every seed: stored as zstd frames.</summary>
    internal static byte[] Text(int seed, int length)
    {
        var random = new Random(seed);
        var text = new StringBuilder();
        while (text.Length < length) text.Append($"block {seed}, line {random.Next(100000)}: nothing here repeats exactly\n");
        return Encoding.ASCII.GetBytes(text.ToString(0, length));
    }

    /// <summary>Two VMs, three checkpoints, three packs of raw and zstd blobs, three index files.</summary>
    internal static (TestRepository T, Dictionary<string, (string Disk, byte[] Content)> Expected) Scene(string? password = null)
    {
        var t = new TestRepository(password: password);
        var expected = new Dictionary<string, (string, byte[])>();
        string a = t.File("a.raw");
        var content = ImageFiles.CreateRaw(a, MiB, (0, ImageFiles.Noise(1, 3 * Block)), (4 * Block, Text(2, 3 * Block)), (12 * Block, Text(3, Block / 2)));
        expected[t.Checkpoint("vm-a", a).Id] = ("a", content);
        content = ImageFiles.Patch(a, (Block, Text(4, 2 * Block)), (9 * Block, ImageFiles.Noise(5, Block)));
        expected[t.Checkpoint("vm-a", a).Id] = ("a", content);
        string b = t.File("b.raw");
        content = ImageFiles.CreateRaw(b, MiB / 2, (0, Text(6, 2 * Block)), (3 * Block, ImageFiles.Noise(7, Block)));
        expected[t.Checkpoint("vm-b", b).Id] = ("b", content);
        return (t, expected);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryFlippedByteInEveryKindOfStoredFileIsFoundAndNoRestoreWritesAWrongByte(bool encrypted)
    {
        var (t, expected) = Scene(encrypted ? "flipped bytes" : null);
        using var owner = t;
        string root = t.Folder.Root;
        Assert.True(t.VerifyAll().Healthy);
        var kinds = new List<(string Kind, string[] Files)>
        {
            ("configuration", new[] { t.Layout.ConfigPath }),
            ("pack", t.PackFiles()),
            ("index", t.IndexFiles()),
            ("manifest", t.ManifestFiles()),
        };
        // An encrypted repository's key file: damage refuses the password (nothing read), never a wrong key.
        if (encrypted) kinds.Add(("key", Directory.GetFiles(Path.Combine(root, "keys"))));
        Assert.All(kinds, k => Assert.NotEmpty(k.Files));
        Assert.Equal(3, kinds[1].Files.Length);

        var random = new Random(20261213);
        const int PerKind = 40;
        int flips = 0, found = 0, refusedAtOpen = 0, wrongRestores = 0, failedRestores = 0, rightRestores = 0;
        var missed = new List<string>();
        foreach (var (kind, files) in kinds)
        {
            // A key file is checked by unlocking it: a key derivation (Argon2id) each, so fewer flips.
            for (int i = 0; i < (kind == "key" ? PerKind / 4 : PerKind); i++)
            {
                string file = files[random.Next(files.Length)];
                long length = new FileInfo(file).Length;
                long offset = kind == "pack" && i % 2 == 1 ? PackStructureOffset(file, random) : random.NextInt64(length);
                byte mask = (byte)random.Next(1, 256);
                string what = $"{kind} {Path.GetRelativePath(root, file)} byte {offset} of {length} ^ 0x{mask:x2}";
                flips++;
                TestRepository.FlipByte(file, offset, mask);
                try
                {
                    var (detected, refused) = Detect(t, withPassword: kind == "key");
                    if (detected) found++; else missed.Add(what);
                    if (refused) refusedAtOpen++;
                    if (refused) continue; // nothing reads a repository refused at open
                    foreach (var (id, (disk, content)) in expected)
                    {
                        switch (TryRestore(t, id, disk, content))
                        {
                            case true: rightRestores++; break;
                            case false: wrongRestores++; missed.Add($"{what}: restoring {id} wrote wrong bytes"); break;
                            case null: failedRestores++; break;
                        }
                    }
                }
                finally
                {
                    TestRepository.FlipByte(file, offset, mask);
                }
            }
        }
        _output.WriteLine($"{found} of {flips} flips found ({refusedAtOpen} refused at open); restores: {rightRestores} right, {failedRestores} refused, {wrongRestores} wrong.");
        foreach (var m in missed) _output.WriteLine("missed: " + m);
        Assert.Empty(missed);
        Assert.Equal(flips, found);
        Assert.Equal(0, wrongRestores);
        Assert.True(t.VerifyAll().Healthy); // every byte put back: nothing else was touched
    }

    /// <summary>A byte of a pack's header, checksum, trailer entries or footer: the few bytes a uniform pick rarely hits.</summary>
    private static long PackStructureOffset(string pack, Random random)
    {
        var entries = TestRepository.PackEntries(pack);
        long blobsEnd = entries.Max(e => e.Offset + e.StoredLength);
        long length = new FileInfo(pack).Length;
        long structure = PackFormat.HeaderSize + (length - blobsEnd);
        long pick = random.NextInt64(structure);
        return pick < PackFormat.HeaderSize ? pick : blobsEnd + pick - PackFormat.HeaderSize;
    }

    /// <summary>Opens the repository afresh and verifies everything with data: damage found, and whether the open refused it.</summary>
    private static (bool Detected, bool Refused) Detect(TestRepository t, bool withPassword)
    {
        CheckpointRepository repository;
        try
        {
            repository = withPassword ? t.OpenAfresh() : t.OpenWithKey();
        }
        catch (Exception e) when (e is InvalidDataException || e is VmCheckpoint.Core.Security.RepositoryPasswordException)
        {
            return (true, true);
        }
        try
        {
            return (!new VerifyJob(repository, null).Verify(repository.ListCheckpoints(), readData: true).Healthy, false);
        }
        catch (InvalidDataException)
        {
            return (true, false); // verification refused to go on: damage found all the same
        }
    }

    /// <summary>True: the right bytes; false: wrong bytes written; null: the restore failed.</summary>
    private static bool? TryRestore(TestRepository t, string id, string disk, byte[] content)
    {
        string destination = t.File("restore-" + Guid.NewGuid().ToString("N"));
        try
        {
            var repository = t.OpenWithKey();
            var file = repository.FindCheckpoint(id) ?? throw new KeyNotFoundException(id);
            var restored = new RestoreJob(repository, null).Run(new RestoreRequest(file, destination) { Format = DiskFormat.Raw, DiskNames = new[] { disk } });
            return content.AsSpan().SequenceEqual(ImageFiles.ReadGuest(Assert.Single(restored).Path));
        }
        catch (Exception e) when (e is IOException || e is InvalidDataException || e is KeyNotFoundException || e is ArgumentException)
        {
            return null;
        }
        finally
        {
            if (Directory.Exists(destination)) Directory.Delete(destination, recursive: true);
        }
    }
}
