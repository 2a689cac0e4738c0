using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Qcow2;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>
/// Deterministic mutation fuzzing of a small real qcow2: random bytes of the header, L1 and L2 tables are
/// changed and the image opened, mapped and read. Only the documented failures may come out.
/// </summary>
public sealed class Qcow2FuzzTests
{
    private const int Iterations = 3000;
    private const long ReadAllLimit = 8L * 1024 * 1024;

    [Theory]
    [InlineData("cluster_size=4k", 1)]
    [InlineData("cluster_size=64k,extended_l2=on", 2)]
    [InlineData("cluster_size=4k,compression_type=zstd", 3)]
    public void MutatedImagesFailOnlyAsCorrupt(string options, int seed)
    {
        using var temp = new TempFolder();
        string path = temp.File("fuzz.qcow2");
        Qemu.CreateQcow2(path, options, "1M");
        Qemu.Io(path, "qcow2", "write -P 0x11 0 8k", "write -z 16k 4k", "write -c -P 0x22 64k 64k", "write -P 0x33 300k 6k",
            "write -P 0x44 1044480 4096");
        byte[] original = File.ReadAllBytes(path);
        (long l1, long l2) = HeaderPatch.Tables(path);
        var regions = new (long Start, int Length)[] { (0, 256), (l1, 64), (l2, 512) };

        var random = new Random(seed);
        var failures = new Dictionary<string, int>();
        var buffer = new byte[256 * 1024];
        for (int i = 0; i < Iterations; i++)
        {
            byte[] mutated = (byte[])original.Clone();
            int edits = random.Next(1, 5);
            for (int k = 0; k < edits; k++)
            {
                var (start, length) = regions[random.Next(regions.Length)];
                long at = start + random.Next(length);
                if (at >= mutated.Length) continue;
                mutated[at] = random.Next(4) == 0 ? (byte)((1 << random.Next(8)) ^ mutated[at]) : (byte)random.Next(256);
            }

            try
            {
                using var image = Qcow2Image.Open(path, new MemoryStream(mutated, writable: false), new BackingChain());
                int extents = 0;
                foreach (var _ in image.GetDataExtents(0, image.VirtualSize))
                {
                    if (++extents > 100_000) break;
                }

                long readEnd = Math.Min(image.VirtualSize, ReadAllLimit);
                for (long pos = 0; pos < readEnd; pos += buffer.Length)
                {
                    image.Read(pos, buffer, 0, (int)Math.Min(buffer.Length, readEnd - pos));
                }
            }
            catch (Exception e) when (e is CorruptImageException || e is InvalidDataException || e is FileNotFoundException)
            {
                // Documented: corrupt image, or a backing file name that points nowhere.
                string key = e.GetType().Name;
                failures[key] = failures.GetValueOrDefault(key) + 1;
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"iteration {i} (seed {seed}) threw {e}");
            }
        }

        // The fuzzer must actually reach the error paths, and not only them.
        Assert.True(failures.Values.Sum() > Iterations / 20, $"only {failures.Values.Sum()} failures");
        Assert.True(failures.Values.Sum() < Iterations, "every mutation failed");
    }
}
