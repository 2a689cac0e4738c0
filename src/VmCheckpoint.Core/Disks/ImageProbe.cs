using System;
using System.IO;
using System.Text;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Disks.Vhd;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// What a file's content and its name say it is. Formats this module reads are named by <see cref="DiskFormat"/>;
    /// formats it recognises but does not read (VMDK, VDI, parallels, ...) by name only, so that they are refused
    /// naming the format instead of being stored as raw.
    /// </summary>
    internal static class ImageProbe
    {
        private const int HeadLength = 512;
        public const string RawData = "raw data";

        /// <summary>A format by name: <see cref="Format"/> is set for the ones this module reads.</summary>
        internal readonly struct Kind
        {
            public Kind(DiskFormat? format, string name)
            {
                Format = format;
                Name = name;
            }

            public DiskFormat? Format { get; }
            public string Name { get; }
            public bool IsUnsupported => Format == null && Name != RawData;
        }

        public static Kind Of(DiskFormat format) => new Kind(format, Name(format));

        public static string Name(DiskFormat format) => format switch
        {
            DiskFormat.Qcow2 => "qcow2",
            DiskFormat.Vhdx => "VHDX",
            DiskFormat.Vhd => "VHD",
            _ => "raw",
        };

        /// <summary>
        /// The format a file's extension names, or null when it names none (.img, .bin, no extension: the content tells).
        /// .raw names raw: such a file is read as raw whatever it holds.
        /// </summary>
        public static Kind? FromName(string path)
        {
            switch (Path.GetExtension(path).ToLowerInvariant())
            {
                case ".qcow2":
                case ".qcow":
                    return Of(DiskFormat.Qcow2);
                case ".vhdx":
                case ".avhdx":
                    return Of(DiskFormat.Vhdx);
                case ".vhd":
                case ".avhd":
                    return Of(DiskFormat.Vhd);
                case ".raw":
                    return Of(DiskFormat.Raw);
                case ".vmdk":
                    return new Kind(null, "VMDK");
                case ".vdi":
                    return new Kind(null, "VDI");
                case ".hdd":
                case ".hds":
                    return new Kind(null, "parallels");
                case ".qed":
                    return new Kind(null, "QED");
                case ".dmg":
                    return new Kind(null, "DMG");
                case ".cloop":
                    return new Kind(null, "cloop");
                case ".bochs":
                    return new Kind(null, "bochs");
                default:
                    return null;
            }
        }

        /// <summary>What the content is: the first format whose signature it carries, or raw data.</summary>
        public static Kind FromContent(Stream file)
        {
            var head = new byte[HeadLength];
            file.Position = 0;
            int got = StreamIO.ReadAtMost(file, head, 0, head.Length);
            if (got >= Qcow2Format.MagicLength && Qcow2Format.HasMagic(head))
            {
                // qemu's qcow (version 1) shares the magic.
                return got >= 8 && BigEndian32(head, 4) == 1 ? new Kind(null, "qcow (version 1)") : Of(DiskFormat.Qcow2);
            }

            if (got >= 8 && VhdxImage.HasSignature(head)) return Of(DiskFormat.Vhdx);
            if (VhdImage.HasCookie(file)) return Of(DiskFormat.Vhd);
            string? other = Unsupported(head, got, file);
            return other != null ? new Kind(null, other) : new Kind(null, RawData);
        }

        /// <summary>Whether the content is <paramref name="format"/>; raw is anything.</summary>
        public static bool Is(Stream file, DiskFormat format)
        {
            switch (format)
            {
                case DiskFormat.Raw:
                    return true;
                case DiskFormat.Vhd:
                    // A fixed VHD's first bytes are its guest's: only the footer tells.
                    return VhdImage.HasCookie(file);
                default:
                    return FromContent(file).Format == format;
            }
        }

        /// <summary>Signatures of formats qemu reads and this module does not (qemu's probes, block/*.c).</summary>
        private static string? Unsupported(byte[] head, int got, Stream file)
        {
            if (StartsWith(head, got, "KDMV") || StartsWith(head, got, "COWD") || StartsWith(head, got, "# Disk DescriptorFile")) return "VMDK";
            // VDI: signature 0xbeda107f, little endian, at 0x40.
            if (got >= 0x44 && head[0x40] == 0x7f && head[0x41] == 0x10 && head[0x42] == 0xda && head[0x43] == 0xbe) return "VDI";
            if (StartsWith(head, got, "<<< ") && Contains(head, got, "VirtualBox Disk Image")) return "VDI";
            if (StartsWith(head, got, "WithoutFreeSpace") || StartsWith(head, got, "WithouFreSpacExt")) return "parallels";
            if (StartsWith(head, got, "QED\0")) return "QED";
            if (got >= 6 && head[0] == (byte)'L' && head[1] == (byte)'U' && head[2] == (byte)'K' && head[3] == (byte)'S' && head[4] == 0xba && head[5] == 0xbe) return "LUKS";
            if (StartsWith(head, got, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop")) return "cloop";
            if (StartsWith(head, got, "Bochs Virtual HD Image")) return "bochs";
            // A DMG's "koly" trailer is its last 512 bytes.
            long length = file.Length;
            if (length >= 512)
            {
                var trailer = new byte[4];
                file.Position = length - 512;
                if (StreamIO.ReadAtMost(file, trailer, 0, 4) == 4 && StartsWith(trailer, 4, "koly")) return "DMG";
            }

            return null;
        }

        private static uint BigEndian32(byte[] b, int at) => (uint)b[at] << 24 | (uint)b[at + 1] << 16 | (uint)b[at + 2] << 8 | b[at + 3];

        private static bool StartsWith(byte[] data, int got, string prefix)
        {
            if (got < prefix.Length) return false;
            for (int i = 0; i < prefix.Length; i++)
            {
                if (data[i] != (byte)prefix[i]) return false;
            }

            return true;
        }

        private static bool Contains(byte[] data, int got, string text) =>
            Encoding.ASCII.GetString(data, 0, Math.Min(got, 128)).IndexOf(text, StringComparison.Ordinal) >= 0;
    }
}
