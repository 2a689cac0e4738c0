using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using VmCheckpoint.Core.Disks.Qcow2;
using VmCheckpoint.Core.Disks.Raw;
using VmCheckpoint.Core.Disks.Vhd;
using VmCheckpoint.Core.Disks.Vhdx;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>Opens and creates disk images, whatever their format.</summary>
    public static class DiskImage
    {
        private static readonly IReadOnlyList<string> NoWarnings = new string[0];

        /// <summary>Opens an image read-only; its format as <see cref="Open(string, DiskFormat?)"/> finds it without one given.</summary>
        public static IDiskImage Open(string path) => Open(path, (DiskFormat?)null);

        /// <summary>
        /// Opens an image read-only. <paramref name="format"/> is qemu-img's -f: the file must be in that format (raw takes
        /// any file as it is). Without one, a file whose extension names a format must be in it (.qcow2, .qcow, .vhdx,
        /// .avhdx, .vhd, .avhd; .raw is raw whatever it holds), and any other (.img, .bin, none) is what its content
        /// says, raw when no format is recognised. A file in a format this module does not read (VMDK, VDI, parallels,
        /// QED, qcow version 1, LUKS, DMG, ...), or whose content is not the format its name or
        /// <paramref name="format"/> says, throws <see cref="ImageFormatException"/>: it is never read as raw instead.
        /// A damaged or hostile image throws <see cref="CorruptImageException"/> (which ImageFormatException is).
        /// </summary>
        public static IDiskImage Open(string path, DiskFormat? format)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            return Open(path, new BackingChain(), child: null, declared: format);
        }

        /// <summary>
        /// What an opened image (and its backing chain) found damaged yet could read around: metadata its guest data
        /// does not depend on, such as a qcow2's refcount or snapshot table, or a VHD's footer at the end of the file.
        /// Each entry names its file. Empty for a sound image; worth a warning and a note on the checkpoint otherwise.
        /// </summary>
        public static IReadOnlyList<string> GetWarnings(IDiskImage image)
        {
            if (image == null) throw new ArgumentNullException(nameof(image));
            return image is IImageWarnings w ? w.Warnings : NoWarnings;
        }

        /// <summary>
        /// Walks every table of the image and its backing chain (a qcow2's L2 tables and each entry in them) without reading
        /// the guest data, and throws <see cref="CorruptImageException"/> at the first entry that points outside the file or
        /// is otherwise bad: what reading the whole disk would find in its metadata, found before anything is read or
        /// written. Run it before writing anything into a source image (a dirty bitmap).
        /// </summary>
        public static void CheckTables(IDiskImage image, CancellationToken cancellation = default)
        {
            if (image == null) throw new ArgumentNullException(nameof(image));
            const long Step = 1L << 36; // 64 GiB of guest at a time, to see cancellation
            for (long at = 0; at < image.VirtualSize; at += Step)
            {
                cancellation.ThrowIfCancellationRequested();
                foreach (DiskExtent _ in image.GetDataExtents(at, Math.Min(Step, image.VirtualSize - at))) { }
            }
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
                case DiskFormat.Vhd:
                    return new VhdImageWriter(path, virtualSize);
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
        /// <paramref name="declared"/> the format given or recorded for it (null: its name, then its content, tell).
        /// </summary>
        internal static IDiskImage Open(string path, BackingChain chain, string? child, DiskFormat? declared)
        {
            chain.Enter(path, child);
            FileStream file = OpenRead(path);
            try
            {
                DiskFormat format = Resolve(path, file, child, declared, out string? warning);
                switch (format)
                {
                    case DiskFormat.Qcow2:
                        return Qcow2Image.Open(path, file, chain);
                    case DiskFormat.Vhd:
                        return VhdImage.Open(path, file, chain);
                    case DiskFormat.Vhdx:
                        // The VHDX reader opens the file itself and follows its own parent locators.
                        file.Dispose();
                        return VhdxImage.Open(path);
                    default:
                        return new RawImage(path, file, warning);
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

        /// <summary>The format to read <paramref name="file"/> in, by the rules of <see cref="Open(string, DiskFormat?)"/>.</summary>
        private static DiskFormat Resolve(string path, FileStream file, string? child, DiskFormat? declared, out string? warning)
        {
            warning = null;
            if (declared is DiskFormat given)
            {
                if (ImageProbe.Is(file, given)) return given;
                string who = child == null ? $"it was given as {ImageProbe.Name(given)}" : $"{child} records it as its {ImageProbe.Name(given)} backing file";
                throw Mismatch(path, ImageProbe.Name(given), ImageProbe.FromContent(file), who);
            }

            ImageProbe.Kind content = ImageProbe.FromContent(file);
            ImageProbe.Kind? named = ImageProbe.FromName(path);
            if (named is ImageProbe.Kind name)
            {
                if (name.Format == DiskFormat.Raw)
                {
                    // The name says raw: never probed into another format (a guest can write any header into its own disk).
                    if (content.Name != ImageProbe.RawData)
                        warning = $"{path}: it begins like a {content.Name} image, yet was read as raw because its name says raw; give the format explicitly to read the image inside";
                    return DiskFormat.Raw;
                }

                if (name.Format is DiskFormat expected)
                {
                    if (ImageProbe.Is(file, expected)) return expected;
                    throw Mismatch(path, name.Name, content, $"its name says {name.Name}");
                }

                if (content.Name == name.Name || content.Name == ImageProbe.RawData)
                    throw Unsupported(path, name.Name, name.Name);
                throw new ImageFormatException(path, name.Name, content.Name,
                    $"its name says {name.Name}, a format this module does not read, yet it holds {Article(content.Name)}; rename it, or give its format explicitly");
            }

            if (content.Format is DiskFormat found) return found;
            if (content.IsUnsupported) throw Unsupported(path, null, content.Name);
            return DiskFormat.Raw;
        }

        private static ImageFormatException Mismatch(string path, string expected, ImageProbe.Kind content, string because)
        {
            if (content.IsUnsupported)
                return new ImageFormatException(path, expected, content.Name, $"{because}, but it is {Article(content.Name)}, and {NotRead(path, content.Name)}");
            string what = content.Name == ImageProbe.RawData
                ? $"it holds no {expected} header: it is damaged, or not {Article(expected)} at all"
                : $"it holds {Article(content.Name)}";
            return new ImageFormatException(path, expected, content.Name, $"{because}, but {what}. Nothing was read from it as raw; give its real format explicitly, or raw to store its bytes as they are");
        }

        private static ImageFormatException Unsupported(string path, string? expected, string found) =>
            new ImageFormatException(path, expected, found, $"it is {Article(found)}, and {NotRead(path, found)}");

        private static string NotRead(string path, string format) =>
            $"{format} images are not read; convert it first (qemu-img convert -O qcow2 '{path}' NEW.qcow2) and checkpoint the copy";

        /// <summary>"a qcow2 image", "a VMDK image", or "raw data".</summary>
        private static string Article(string name) => name == ImageProbe.RawData ? name : $"a {name} image";
    }
}
