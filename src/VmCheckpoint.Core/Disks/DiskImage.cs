using System;
using System.IO;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Disks.Raw;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>Opens and creates disk images, whatever their format.</summary>
    public static class DiskImage
    {
        private const int ProbeLength = 8;
        private static readonly byte[] VhdxSignature = { (byte)'v', (byte)'h', (byte)'d', (byte)'x', (byte)'f', (byte)'i', (byte)'l', (byte)'e' };

        /// <summary>Opens an image read-only, detecting its format from its content (not its name).</summary>
        public static IDiskImage Open(string path)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            return Open(path, new BackingChain(), child: null, declared: null);
        }

        /// <summary>Creates a new, empty, sparse image of the given format at <paramref name="path"/>.</summary>
        public static IDiskImageWriter Create(string path, DiskFormat format, long virtualSize)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            switch (format)
            {
                case DiskFormat.Raw:
                    return new RawImageWriter(path, virtualSize);
                case DiskFormat.Qcow2:
                    return new Qcow2ImageWriter(path, virtualSize);
                case DiskFormat.Vhdx:
                    return VhdxImageWriter.CreateDynamic(path, virtualSize);
                default:
                    throw new ArgumentOutOfRangeException(nameof(format), format, "Unknown disk format.");
            }
        }

        /// <summary>
        /// Creates a new, empty differencing VHDX (an .avhdx link) on the VHDX at <paramref name="parentPath"/>: it reads
        /// as its parent until written, and holds only what is written to it.
        /// </summary>
        public static IDiskImageWriter CreateDifferencingVhdx(string path, string parentPath)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            if (parentPath == null) throw new ArgumentNullException(nameof(parentPath));
            return VhdxImageWriter.CreateDifferencing(path, parentPath);
        }

        /// <summary>
        /// Opens one link of a chain; <paramref name="child"/> is the image that names it, if any, and
        /// <paramref name="declared"/> the format it records for it (null: probe the content).
        /// </summary>
        internal static IDiskImage Open(string path, BackingChain chain, string? child, DiskFormat? declared)
        {
            chain.Enter(path, child);
            FileStream file = OpenRead(path);
            try
            {
                DiskFormat probed = Probe(file);
                if (declared == DiskFormat.Qcow2 && probed != DiskFormat.Qcow2)
                    throw new CorruptImageException(child ?? path, $"backing file '{path}' is declared qcow2 but has no qcow2 magic");
                DiskFormat format = declared ?? probed;
                switch (format)
                {
                    case DiskFormat.Qcow2:
                        return Qcow2Image.Open(path, file, chain);
                    case DiskFormat.Vhdx:
                        // The VHDX reader opens the file itself and follows its own parent locators.
                        file.Dispose();
                        return VhdxImage.Open(path);
                    default:
                        return new RawImage(path, file);
                }
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        /// <summary>Opens a file for reading while a hypervisor may still hold it open.</summary>
        internal static FileStream OpenRead(string path) =>
            // No RandomAccess hint: it turns off the kernel's readahead, and checkpoints read mostly in disk order.
            new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1, FileOptions.None);

        /// <summary>Detects the format from the first bytes; anything unrecognised is raw.</summary>
        internal static DiskFormat Probe(Stream file)
        {
            var head = new byte[ProbeLength];
            file.Position = 0;
            int got = StreamIO.ReadAtMost(file, head, 0, head.Length);
            if (got >= Qcow2Format.MagicLength && Qcow2Format.HasMagic(head))
            {
                return DiskFormat.Qcow2;
            }

            if (got == VhdxSignature.Length && StartsWith(head, VhdxSignature))
            {
                return DiskFormat.Vhdx;
            }

            return DiskFormat.Raw;
        }

        private static bool StartsWith(byte[] data, byte[] prefix)
        {
            for (int i = 0; i < prefix.Length; i++)
            {
                if (data[i] != prefix[i]) return false;
            }

            return true;
        }
    }
}
