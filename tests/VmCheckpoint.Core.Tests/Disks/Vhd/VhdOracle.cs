using System.Text.Json;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Tests.Vhdx;
using Xunit;

namespace VmCheckpoint.Core.Tests.Disks.Vhd;

/// <summary>qemu (block/vpc.c) and libvhdi as oracles of a VHD's guest view, and our reader's view to compare.</summary>
internal static class VhdOracle
{
    /// <summary>The guest view as qemu reads it with -f vpc (it probes a fixed VHD as raw without it).</summary>
    public static byte[] Qemu(string path, TempFolder temp)
    {
        string raw = temp.File(System.IO.Path.GetFileName(path) + ".qemu.raw");
        Disks.Qemu.Img("convert", "-f", "vpc", "-O", "raw", path, raw);
        byte[] bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    public static long QemuSize(string path)
    {
        using var doc = JsonDocument.Parse(Disks.Qemu.Ok("qemu-img", "info", "-f", "vpc", "--output=json", path));
        return doc.RootElement.GetProperty("virtual-size").GetInt64();
    }

    /// <summary>The guest view as libvhdi reads it, with the parent of a differencing disk given.</summary>
    public static byte[] Libvhdi(string path, string? parent, TempFolder temp)
    {
        Tool.HasPyVhdi();
        string raw = temp.File(System.IO.Path.GetFileName(path) + ".libvhdi.raw");
        Tool.PyVhdiToRaw(path, parent, raw);
        byte[] bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    /// <summary>Our view, with the extents checked to cover every non-zero byte.</summary>
    public static byte[] Ours(string path, DiskFormat? format = null)
    {
        using IDiskImage image = DiskImage.Open(path, format);
        Assert.Equal(DiskFormat.Vhd, image.Format);
        byte[] data = ImageBytes.ReadAll(image);
        ImageBytes.AssertExtentsCover(image, data);
        return data;
    }

    public static void AssertSame(byte[] expected, byte[] actual, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} bytes, expected {expected.Length}");
        int at = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(at == expected.Length, $"{what}: first difference at byte {at}");
    }
}
