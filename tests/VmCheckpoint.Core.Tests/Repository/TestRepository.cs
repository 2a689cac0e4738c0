using VmCheckpoint.Core.Security;
using VmCheckpoint.Core.Catalog;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Hypervisors.ImageFiles;
using VmCheckpoint.Core.Jobs;
using VmCheckpoint.Core.Repository;
using VmCheckpoint.Core.Repository.Backends;
using VmCheckpoint.Core.Repository.Encryption;
using VmCheckpoint.Core.Tests.Disks;
using VmCheckpoint.Core.Tests.Repository.Backends;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository;

/// <summary>
/// A real repository (64 KiB blocks) in a temporary folder, with the images and restores of one test beside it; with
/// <c>faults</c>, reached through a <see cref="FaultInjectingBackend"/> over that folder.
/// </summary>
internal sealed class TestRepository : IDisposable
{
    public const int BlockSize = 64 * 1024;
    private readonly TempFolder _temp = new();

    /// <param name="password">Encrypts the repository under this password (null: not encrypted).</param>
    public TestRepository(bool faults = false, string? password = null)
    {
        string folder = System.IO.Path.Combine(_temp.Path, "repo");
        Secret = password is null ? null : RepositorySecret.FromString(password, "the test's password");
        if (faults)
        {
            Faults = new FaultInjectingBackend(new LocalFolderBackend(folder));
            Repository = CheckpointRepository.Create(Faults, BlockSize, encryptWith: Secret);
        }
        else
        {
            Repository = CheckpointRepository.Create(folder, BlockSize, encryptWith: Secret);
        }
    }

    /// <summary>The password of an encrypted repository; null when it is not encrypted.</summary>
    public RepositorySecret? Secret { get; }

    /// <summary>Opens the repository afresh with the key it was created with (no key derivation: fast).</summary>
    public CheckpointRepository OpenWithKey() =>
        Repository.Layout.Key is { } key ? CheckpointRepository.Open(Folder.Root, key) : CheckpointRepository.Open(Folder.Root);

    /// <summary>Opens the repository afresh, as another process would (with its password, never the cached key).</summary>
    public CheckpointRepository OpenAfresh()
    {
        CheckpointRepository.Forget(Repository.Id);
        return CheckpointRepository.Open(Folder.Root, Secret);
    }

    public CheckpointRepository Repository { get; }
    public RepositoryLayout Layout => Repository.Layout;
    public FaultInjectingBackend? Faults { get; }
    /// <summary>The repository's folder, as a backend without faults.</summary>
    public LocalFolderBackend Folder => Repository.Backend.Folder();

    /// <summary>A path beside the repository (images, restore targets).</summary>
    public string File(string name) => _temp.File(name);

    /// <summary>Checkpoints image files as the disks of one VM.</summary>
    public CheckpointManifest Checkpoint(string vmName, params string[] images) => Checkpoint(vmName, null, images);

    public CheckpointManifest Checkpoint(string vmName, CheckpointCatalog? catalog, params string[] images)
    {
        var disks = ImageFileSource.OpenDiskFiles(images);
        try
        {
            return new CheckpointJob(Repository, catalog).Run(new CheckpointRequest(vmName, disks));
        }
        finally
        {
            foreach (var d in disks) d.Image.Dispose();
        }
    }

    public CheckpointFile FileOf(string id) => Repository.FindCheckpoint(id) ?? throw new KeyNotFoundException(id);

    /// <summary>Restores one disk of a checkpoint into a fresh folder and returns the guest bytes read back.</summary>
    public byte[] Restore(string checkpointId, string diskName, DiskFormat format = DiskFormat.Raw)
    {
        string target = RestoreFile(checkpointId, diskName, format);
        return ImageFiles.ReadGuest(target);
    }

    public string RestoreFile(string checkpointId, string diskName, DiskFormat format = DiskFormat.Raw)
    {
        string destination = File("restore-" + Guid.NewGuid().ToString("N"));
        var restored = new RestoreJob(Repository, null).Run(new RestoreRequest(FileOf(checkpointId), destination)
        {
            Format = format,
            DiskNames = new[] { diskName },
        });
        return Assert.Single(restored).Path;
    }

    /// <summary>Blobs the store knows of (from its index files and pack trailers).</summary>
    public int BlobCount()
    {
        using var store = Repository.OpenStore(CancellationToken.None);
        return store.Count;
    }

    public List<VerificationResult> Verify(bool readData) =>
        new VerifyJob(Repository, null).Run(Repository.ListCheckpoints(), readData).ToList();

    /// <summary>Verifies every checkpoint, and with them every index file and (with data) every pack.</summary>
    public VerificationReport VerifyAll(bool readData = true) =>
        new VerifyJob(Repository, null).Verify(Repository.ListCheckpoints(), readData);

    /// <summary>Repairs the index; <paramref name="confirm"/> as the cmdlet's ShouldProcess (null: yes).</summary>
    public RepairResult Repair(Func<RepairResult, bool>? confirm = null) => new RepairJob(Repository, null) { LockWait = TimeSpan.Zero }.Run(confirm);

    public string[] IndexFiles() => Directory.GetFiles(Layout.IndexDirectory, "*.idx");

    public string[] ManifestFiles() => Directory.GetFiles(Layout.CheckpointsDirectory, "*.json", SearchOption.AllDirectories);

    public string[] PackFiles() => Directory.GetFiles(Layout.PacksDirectory, "*.pack", SearchOption.AllDirectories);

    /// <summary>The entries of a pack, from its trailer.</summary>
    public static List<PackEntry> PackEntries(string pack)
    {
        using var s = System.IO.File.OpenRead(pack);
        return PackFormat.ReadTrailer(s, pack);
    }

    /// <summary>Flips the bits of <paramref name="mask"/> in one byte of a file, as a disk's silent corruption would.</summary>
    public static void FlipByte(string path, long position, byte mask)
    {
        using var f = new FileStream(path, FileMode.Open);
        f.Position = position;
        int b = f.ReadByte();
        f.Position--;
        f.WriteByte((byte)(b ^ mask));
    }

    public long PackBytes() => PackFiles().Sum(p => new FileInfo(p).Length);

    public void Dispose() => _temp.Dispose();
}

/// <summary>Builds raw images with known content and reads any image back as guest bytes.</summary>
internal static class ImageFiles
{
    /// <summary>Deterministic, incompressible bytes.</summary>
    public static byte[] Noise(int seed, int length)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>A sparse raw file of <paramref name="size"/> bytes with the given writes; returns its guest content.</summary>
    public static byte[] CreateRaw(string path, long size, params (long Offset, byte[] Data)[] writes)
    {
        using (var f = new FileStream(path, FileMode.Create))
        {
            f.SetLength(size);
            foreach (var (offset, data) in writes)
            {
                f.Position = offset;
                f.Write(data);
            }
        }
        return System.IO.File.ReadAllBytes(path);
    }

    /// <summary>Overwrites bytes of an existing raw file; returns its guest content.</summary>
    public static byte[] Patch(string path, params (long Offset, byte[] Data)[] writes)
    {
        using (var f = new FileStream(path, FileMode.Open))
        {
            foreach (var (offset, data) in writes)
            {
                f.Position = offset;
                f.Write(data);
            }
        }
        return System.IO.File.ReadAllBytes(path);
    }

    public static byte[] ReadGuest(string path)
    {
        using var image = DiskImage.Open(path);
        var bytes = new byte[image.VirtualSize];
        const int chunk = 1 << 20;
        for (long at = 0; at < bytes.Length; at += chunk)
        {
            int n = (int)Math.Min(chunk, bytes.Length - at);
            var buffer = new byte[n];
            image.Read(at, buffer, 0, n);
            Buffer.BlockCopy(buffer, 0, bytes, (int)at, n);
        }
        return bytes;
    }
}

/// <summary>
/// Fault injector over a real image: reads pass through until <paramref name="failAfterReads"/> of them have
/// been served, then every read throws IOException as an unreachable share or a dying disk would.
/// Counts the bytes read so that tests can see what a run touched.
/// </summary>
internal sealed class FaultyDiskImage : IDiskImage
{
    private readonly IDiskImage _inner;
    private readonly int _failAfterReads;
    private int _reads;

    public FaultyDiskImage(IDiskImage inner, int failAfterReads = int.MaxValue)
    {
        _inner = inner;
        _failAfterReads = failAfterReads;
    }

    public long BytesRead { get; private set; }
    public List<long> ReadOffsets { get; } = new();
    public string Path => _inner.Path;
    public DiskFormat Format => _inner.Format;
    public long VirtualSize => _inner.VirtualSize;

    public IEnumerable<DiskExtent> GetDataExtents(long offset, long length) => _inner.GetDataExtents(offset, length);

    public void Read(long offset, byte[] buffer, int index, int count)
    {
        if (_reads++ >= _failAfterReads) throw new IOException($"injected read failure at offset {offset}");
        _inner.Read(offset, buffer, index, count);
        BytesRead += count;
        ReadOffsets.Add(offset);
    }

    public void Dispose() => _inner.Dispose();
}
