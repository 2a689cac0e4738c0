using Xunit;
using System.Buffers.Binary;
using System.Diagnostics;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Tests.Vhdx;

/// <summary>A temporary folder, deleted with everything in it on dispose.</summary>
internal sealed class TempFolder : IDisposable
{
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "vhdx-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() => Directory.Delete(Path, recursive: true);
}

/// <summary>Runs qemu-img, qemu-io and python3 (pyvhdi) as oracles.</summary>
internal static class Tool
{
    public static (int ExitCode, string Output) Try(string exe, params string[] args)
    {
        var info = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in args) info.ArgumentList.Add(a);
        using Process process = Process.Start(info)!;
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, stdout + stderr.Result);
    }

    public static string Run(string exe, params string[] args)
    {
        var (code, output) = Try(exe, args);
        if (code != 0) throw new InvalidOperationException($"{exe} {string.Join(' ', args)} exited {code}: {output}");
        return output;
    }

    public static void QemuIo(string image, string command) => Run("qemu-io", "-f", "vhdx", "-c", command, image);

    /// <summary>Allocated bytes on disk (st_blocks * 512), to check sparseness.</summary>
    public static long AllocatedBytes(string path) => long.Parse(Run("stat", "-c", "%b", path).Trim()) * 512;

    /// <summary>libvhdi is the oracle where qemu-img has none; build.ps1 Bootstrap installs it, so its absence is a failure, not a skip.</summary>
    public static bool HasPyVhdi() => System.IO.File.Exists("/usr/bin/python3") && Try("/usr/bin/python3", "-c", "import pyvhdi").ExitCode == 0
        ? true
        : throw new InvalidOperationException("python3-libvhdi is not installed: run ./build.ps1 Bootstrap.");

    /// <summary>Reads a VHDX (with its parent, for one level of differencing) through libvhdi into a raw file.</summary>
    public static void PyVhdiToRaw(string child, string? parent, string raw)
    {
        const string script = """
            import sys, pyvhdi
            f = pyvhdi.file(); f.open(sys.argv[1])
            if sys.argv[2]:
                p = pyvhdi.file(); p.open(sys.argv[2]); f.set_parent(p)
            with open(sys.argv[3], 'wb') as out:
                size = f.get_media_size(); at = 0
                while at < size:
                    n = min(1 << 20, size - at)
                    out.write(f.read_buffer_at_offset(n, at)); at += n
            """;
        Run("/usr/bin/python3", "-c", script, child, parent ?? "", raw);
    }
}

internal static class ImageBytes
{
    /// <summary>The whole guest view of an image.</summary>
    public static byte[] ReadAll(IDiskImage image)
    {
        var data = new byte[image.VirtualSize];
        for (long at = 0; at < data.Length; at += 1 << 20)
        {
            int n = (int)Math.Min(1 << 20, data.Length - at);
            var chunk = new byte[n];
            image.Read(at, chunk, 0, n);
            Buffer.BlockCopy(chunk, 0, data, (int)at, n);
        }
        return data;
    }

    /// <summary>Asserts that every non-zero byte lies inside one of the extents, and the extents are sorted and disjoint.</summary>
    public static void AssertExtentsCover(IDiskImage image, byte[] data)
    {
        var extents = image.GetDataExtents(0, image.VirtualSize).ToList();
        long previousEnd = -1;
        foreach (DiskExtent e in extents)
        {
            Assert.True(e.Offset > previousEnd, $"extents not sorted/merged at {e}");
            previousEnd = e.End;
        }
        // Walk the gaps between extents: each must be all zero.
        long at = 0;
        foreach (DiskExtent e in extents.Append(new DiskExtent(data.Length, 0)))
        {
            int gap = (int)(e.Offset - at);
            int nonZero = data.AsSpan((int)at, gap).IndexOfAnyExcept((byte)0);
            if (nonZero >= 0) Assert.Fail($"non-zero byte at {at + nonZero} outside the data extents");
            at = e.End;
        }
    }

    public static void Patch(string path, long offset, byte[] data)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.Position = offset;
        stream.Write(data, 0, data.Length);
    }

    public static byte[] ReadAt(string path, long offset, int count)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read);
        var data = new byte[count];
        stream.Position = offset;
        stream.ReadExactly(data, 0, count);
        return data;
    }

    /// <summary>Rewrites both headers through <paramref name="change"/>, re-checksummed.</summary>
    public static void RewriteHeaders(string path, Action<VhdxHeader> change)
    {
        foreach (long at in new[] { VhdxLayout.Header1Offset, VhdxLayout.Header2Offset })
        {
            byte[] bytes = ReadAt(path, at, VhdxLayout.HeaderSize);
            VhdxHeader header = VhdxHeader.TryParse(bytes, out string reason) ?? throw new InvalidOperationException(reason);
            change(header);
            header.WriteTo(bytes);
            Patch(path, at, bytes);
        }
    }

    /// <summary>Re-checksums a region table copy after a test changed it.</summary>
    public static void FixRegionChecksum(string path, long at)
    {
        byte[] table = ReadAt(path, at, VhdxLayout.RegionTableSize);
        uint crc = Crc32C.ComputeWithZeroedField(table, 0, table.Length, VhdxLayout.RegionChecksumField);
        BinaryPrimitives.WriteUInt32LittleEndian(table.AsSpan(VhdxLayout.RegionChecksumField), crc);
        Patch(path, at, table);
    }
}
