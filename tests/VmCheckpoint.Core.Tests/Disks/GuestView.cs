using VmCheckpoint.Core.Disks;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Reads an image's guest view through IDiskImage and checks it against qemu.</summary>
internal static class GuestView
{
    public const int Chunk = 1024 * 1024;

    /// <summary>
    /// Reads the whole guest view into <paramref name="rawOut"/>, asserting that the data extents are well
    /// formed and that every byte outside them is zero. Returns the extents.
    /// </summary>
    public static List<DiskExtent> Dump(IDiskImage image, string rawOut)
    {
        List<DiskExtent> extents = image.GetDataExtents(0, image.VirtualSize).ToList();
        for (int i = 0; i < extents.Count; i++)
        {
            Assert.True(extents[i].Length > 0, $"empty extent {extents[i]}");
            Assert.True(extents[i].End <= image.VirtualSize, $"extent {extents[i]} past the virtual size");
            if (i > 0) Assert.True(extents[i - 1].End < extents[i].Offset, $"extents {extents[i - 1]} and {extents[i]} overlap or touch");
        }

        var buffer = new byte[Chunk];
        using var output = new FileStream(rawOut, FileMode.Create, FileAccess.Write);
        int e = 0;
        for (long pos = 0; pos < image.VirtualSize; pos += Chunk)
        {
            int n = (int)Math.Min(Chunk, image.VirtualSize - pos);
            image.Read(pos, buffer, 0, n);
            output.Write(buffer, 0, n);

            // Every byte outside the extents must be zero.
            for (long p = pos; p < pos + n;)
            {
                while (e < extents.Count && extents[e].End <= p) e++;
                long holeEnd = e < extents.Count ? Math.Min(extents[e].Offset, pos + n) : pos + n;
                for (long q = p; q < holeEnd; q++)
                {
                    if (buffer[q - pos] != 0)
                        throw new Xunit.Sdk.XunitException($"{image.Path}: byte {q} is 0x{buffer[q - pos]:x2} but lies outside every data extent");
                }

                p = e < extents.Count ? Math.Max(holeEnd, Math.Min(extents[e].End, pos + n)) : pos + n;
            }
        }

        return extents;
    }

    /// <summary>Dumps <paramref name="path"/> through DiskImage.Open and asserts qemu sees the same guest view.</summary>
    public static List<DiskExtent> AssertMatchesQemu(string path, string qemuFormat, TempFolder temp)
    {
        string dump = temp.File(System.IO.Path.GetFileName(path) + ".dump.raw");
        List<DiskExtent> extents;
        using (IDiskImage image = DiskImage.Open(path))
        {
            extents = Dump(image, dump);
        }

        Qemu.Result r = Qemu.Compare(dump, "raw", path, qemuFormat);
        Assert.True(r.ExitCode == 0, $"qemu-img compare: {r.Stdout} {r.Stderr}");
        return extents;
    }

    /// <summary>Writes every data extent of <paramref name="source"/> to <paramref name="writer"/> in pieces of <paramref name="piece"/> bytes.</summary>
    public static void Copy(IDiskImage source, IDiskImageWriter writer, int piece)
    {
        var buffer = new byte[piece];
        foreach (DiskExtent extent in source.GetDataExtents(0, source.VirtualSize))
        {
            for (long pos = extent.Offset; pos < extent.End; pos += piece)
            {
                int n = (int)Math.Min(piece, extent.End - pos);
                source.Read(pos, buffer, 0, n);
                writer.Write(pos, buffer, 0, n);
            }
        }

        writer.Complete();
    }
}
