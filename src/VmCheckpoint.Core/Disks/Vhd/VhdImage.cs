using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using static VmCheckpoint.Core.Disks.Vhd.VhdFormat;

namespace VmCheckpoint.Core.Disks.Vhd
{
    /// <summary>
    /// A VHD (fixed, dynamic or differencing) opened read-only. What it reads is what qemu reads (block/vpc.c), or it
    /// refuses: the size comes from the footer as qemu takes it (CHS geometry or current_size, by creator), an allocated
    /// block of a dynamic disk reads as its bytes in the file, and a sector its bitmap marks unwritten must hold zeros
    /// there (where Windows and qemu would read different bytes, nothing is guessed). A differencing disk reads the
    /// sectors its bitmaps mark from itself and the rest from its parent, found through its parent locators and
    /// checked by unique id (qemu has no differencing support to compare with; libvhdi does).
    /// </summary>
    internal sealed class VhdImage : IDiskImage, IImageWarnings
    {
        /// <summary>Bitmaps kept in memory (512 bytes each for the usual 2 MiB blocks); reads go mostly in disk order.</summary>
        private const int BitmapCacheEntries = 4096;
        /// <summary>2040 GiB in 32 KiB blocks; real VHDs use 2 MiB blocks (at most about a million entries).</summary>
        private const long MaxBatEntries = 1L << 26;

        private readonly FileStream _file;
        private readonly DirectFile? _direct;
        private readonly long _fileLength;
        private readonly uint[]? _bat;
        private readonly int _blockSize;
        private readonly int _bitmapBytes;
        private readonly Dictionary<long, byte[]> _bitmaps = new Dictionary<long, byte[]>();
        private readonly List<Piece> _pieces = new List<Piece>();
        private readonly List<string> _warnings = new List<string>();
        private IDiskImage? _parent;

        private VhdImage(string path, FileStream file, VhdFooter footer, VhdDynamicHeader? header, uint[]? bat, long virtualSize)
        {
            Path = path;
            _file = file;
            _fileLength = file.Length;
            Footer = footer;
            Header = header;
            _bat = bat;
            VirtualSize = virtualSize;
            _blockSize = header?.BlockSize ?? 0;
            _bitmapBytes = header == null ? 0 : BitmapBytes(header.BlockSize);
            _direct = DirectFile.TryOpenForReading(path);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Vhd;
        public long VirtualSize { get; }
        internal VhdFooter Footer { get; }
        internal VhdDynamicHeader? Header { get; }
        internal IDiskImage? Parent => _parent;

        public IReadOnlyList<string> Warnings
        {
            get
            {
                var all = new List<string>(_warnings);
                if (_parent != null) all.AddRange(DiskImage.GetWarnings(_parent));
                return all;
            }
        }

        /// <summary>True if the file has a VHD footer cookie at offset 0 (dynamic, differencing) or in its last 512 bytes.</summary>
        public static bool HasCookie(Stream file)
        {
            var sector = new byte[FooterSize];
            long length = file.Length;
            if (length < FooterSize) return false;
            file.Position = 0;
            if (StreamIO.ReadAtMost(file, sector, 0, CookieLength) == CookieLength && VhdFormat.HasCookie(sector, 0, FooterCookie)) return true;
            file.Position = length - FooterSize;
            return StreamIO.ReadAtMost(file, sector, 0, CookieLength) == CookieLength && VhdFormat.HasCookie(sector, 0, FooterCookie);
        }

        /// <summary>Opens a VHD over <paramref name="file"/> (which it then owns on success) and, for a differencing disk, its parents.</summary>
        internal static VhdImage Open(string path, FileStream file, BackingChain chain)
        {
            long length = file.Length;
            if (length < FooterSize)
                throw new CorruptImageException(path, $"file is {length} bytes, too short for a VHD footer ({FooterSize} bytes)");
            var head = new byte[FooterSize];
            var tail = new byte[FooterSize];
            ReadExactly(path, file, 0, head, FooterSize);
            ReadExactly(path, file, length - FooterSize, tail, FooterSize);
            var warnings = new List<string>();
            VhdFooter footer = ChooseFooter(path, head, tail, length, warnings);

            long sectors = footer.GuestSectors;
            if (sectors > MaxSectors)
                throw new CorruptImageException(path, $"its size of {sectors} sectors is larger than the {MaxSectors} a VHD can have (2040 GiB)");
            long virtualSize = sectors * SectorSize;

            VhdImage image;
            if (footer.DiskType == DiskTypeFixed)
            {
                if (virtualSize > length - FooterSize)
                    throw new CorruptImageException(path, $"a fixed VHD of {virtualSize} bytes needs {virtualSize + FooterSize} bytes of file, and the file has {length}: it was cut short");
                image = new VhdImage(path, file, footer, null, null, virtualSize);
            }
            else
            {
                bool tailFooter = VhdFooter.TryParse(tail, 0, out _) != null;
                VhdDynamicHeader header = ReadDynamicHeader(path, file, footer, length);
                uint[] bat = ReadBat(path, file, footer, header, virtualSize, length, tailFooter);
                image = new VhdImage(path, file, footer, header, bat, virtualSize);
            }

            image._warnings.AddRange(warnings);
            try
            {
                if (footer.DiskType == DiskTypeDifferencing) image._parent = OpenParent(image, chain);
                return image;
            }
            catch
            {
                image._direct?.Dispose();
                throw;
            }
        }

        /// <summary>
        /// The footer as qemu finds it: the copy at offset 0 when there is one (a dynamic or differencing disk), else the
        /// last 512 bytes (a fixed disk). A damaged footer is refused, as qemu refuses it.
        /// </summary>
        private static VhdFooter ChooseFooter(string path, byte[] head, byte[] tail, long length, List<string> warnings)
        {
            bool headCookie = VhdFormat.HasCookie(head, 0, FooterCookie);
            bool tailCookie = VhdFormat.HasCookie(tail, 0, FooterCookie);
            if (headCookie)
            {
                VhdFooter copy = VhdFooter.TryParse(head, 0, out string reason)
                    ?? throw new CorruptImageException(path, $"the footer copy at offset 0 is damaged: {reason}");
                if (copy.DiskType == DiskTypeFixed)
                    throw new CorruptImageException(path, "the footer copy at offset 0 describes a fixed disk, which has none: the file is not a VHD that any reader agrees on");
                VhdFooter? end = tailCookie ? VhdFooter.TryParse(tail, 0, out reason) : null;
                if (end == null)
                    warnings.Add($"{path}: the footer at the end of the file is {(tailCookie ? "damaged (" + reason + ")" : "missing")}; its copy at offset 0 was used");
                else if (!SameDisk(copy, end))
                    warnings.Add($"{path}: the footer at the end of the file disagrees with its copy at offset 0 (type, size or unique id); the copy was used, as qemu uses it");
                return copy;
            }

            if (!tailCookie)
                throw new ImageFormatException(path, "VHD", "raw data", "it is not a VHD: it has no 'conectix' footer, neither in its last 512 bytes nor at offset 0");
            VhdFooter footer = VhdFooter.TryParse(tail, 0, out string why)
                ?? throw new CorruptImageException(path, $"the VHD footer in the last 512 bytes is damaged: {why}");
            if (footer.DiskType != DiskTypeFixed)
                throw new CorruptImageException(path, $"a {TypeName(footer.DiskType)} VHD must have a copy of its footer at offset 0, and this one has none (qemu would read its headers as disk data)");
            return footer;
        }

        private static bool SameDisk(VhdFooter a, VhdFooter b) =>
            a.DiskType == b.DiskType && a.CurrentSize == b.CurrentSize && a.UniqueId == b.UniqueId && a.DataOffset == b.DataOffset
            && a.GeometrySectors == b.GeometrySectors && a.CreatorApplication == b.CreatorApplication;

        internal static string TypeName(int type) => type switch
        {
            DiskTypeFixed => "fixed",
            DiskTypeDynamic => "dynamic",
            DiskTypeDifferencing => "differencing",
            _ => $"type {type}",
        };

        private static VhdDynamicHeader ReadDynamicHeader(string path, FileStream file, VhdFooter footer, long length)
        {
            ulong at = footer.DataOffset;
            if (at < FooterSize || at > (ulong)length || (ulong)length - at < DynamicHeaderSize)
                throw new CorruptImageException(path, $"the dynamic disk header at {at} is not inside the file ({length} bytes) after the footer copy");
            var data = new byte[DynamicHeaderSize];
            ReadExactly(path, file, (long)at, data, DynamicHeaderSize);
            return VhdDynamicHeader.Parse(path, data);
        }

        /// <summary>
        /// Reads the BAT entries of the disk's blocks and checks that every allocated block lies whole inside the file,
        /// clear of the headers, the BAT and every other block: a block past the end is a truncated file, not zeros.
        /// </summary>
        private static uint[] ReadBat(string path, FileStream file, VhdFooter footer, VhdDynamicHeader header, long virtualSize, long length, bool tailFooter)
        {
            long blockSize = header.BlockSize;
            long needed = (virtualSize + blockSize - 1) / blockSize;
            if (needed > MaxBatEntries)
                throw new CorruptImageException(path, $"a disk of {virtualSize} bytes in blocks of {blockSize} needs {needed} BAT entries, more than the {MaxBatEntries} this reader takes");
            if (header.MaxTableEntries < needed)
                throw new CorruptImageException(path, $"the BAT has {header.MaxTableEntries} entries; a disk of {virtualSize} bytes in blocks of {blockSize} needs {needed}");
            long tableBytes = (long)header.MaxTableEntries * BatEntrySize;
            ulong tableOffset = header.TableOffset;
            long headerAt = (long)footer.DataOffset;
            if (tableOffset < FooterSize || tableOffset > (ulong)length || (ulong)length - tableOffset < (ulong)tableBytes)
                throw new CorruptImageException(path, $"the BAT at {tableOffset} ({header.MaxTableEntries} entries) is not inside the file ({length} bytes)");
            if (Overlaps((long)tableOffset, tableBytes, headerAt, DynamicHeaderSize))
                throw new CorruptImageException(path, $"the BAT at {tableOffset} overlaps the dynamic disk header at {headerAt}");

            var raw = new byte[needed * BatEntrySize];
            ReadExactly(path, file, (long)tableOffset, raw, raw.Length);
            var bat = new uint[needed];
            int bitmapBytes = BitmapBytes(header.BlockSize);
            long blockSpan = bitmapBytes + blockSize;
            long dataEnd = length - (tailFooter ? FooterSize : 0);
            var starts = new List<long>();
            for (long i = 0; i < needed; i++)
            {
                uint entry = BinaryPrimitives.ReadUInt32BigEndian(raw.AsSpan((int)(i * BatEntrySize)));
                bat[i] = entry;
                if (entry == UnusedBatEntry) continue;
                long start = (long)entry * SectorSize;
                if (start < FooterSize || start > dataEnd - blockSpan)
                    throw new CorruptImageException(path, $"BAT entry {i} puts block {i} at file offset {start} (+{blockSpan} bytes), outside the file's data area ({dataEnd} bytes): the file was cut short or the entry is damaged");
                if (Overlaps(start, blockSpan, headerAt, DynamicHeaderSize) || Overlaps(start, blockSpan, (long)tableOffset, tableBytes))
                    throw new CorruptImageException(path, $"BAT entry {i} puts block {i} at file offset {start}, over the dynamic disk header or the BAT");
                starts.Add(start);
            }

            starts.Sort();
            for (int i = 1; i < starts.Count; i++)
            {
                if (starts[i] < starts[i - 1] + blockSpan)
                    throw new CorruptImageException(path, $"two BAT entries put blocks at file offsets {starts[i - 1]} and {starts[i]}, which overlap: one guest range would alias another");
            }

            return bat;
        }

        private static bool Overlaps(long a, long aLength, long b, long bLength) => a < b + bLength && b < a + aLength;

        private static IDiskImage OpenParent(VhdImage child, BackingChain chain)
        {
            VhdDynamicHeader header = child.Header!;
            var candidates = new List<string>();
            string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(child.Path)) ?? ".";
            var names = new List<string>();
            // Relative locators first (they survive moving the pair together), then absolute ones, then each name in the child's folder.
            foreach (bool relative in new[] { true, false })
            {
                foreach (VhdParentLocator locator in header.ParentLocators)
                {
                    bool isRelative = locator.PlatformCode == PlatformW2ru || locator.PlatformCode == PlatformWi2r;
                    if (isRelative != relative) continue;
                    string? text = ReadLocator(child, locator);
                    if (string.IsNullOrEmpty(text)) continue;
                    names.Add(text!);
                    string local = ToLocalSeparators(text!);
                    candidates.Add(relative ? System.IO.Path.Combine(folder, local) : local);
                    if (!relative && local != text) candidates.Add(text!);
                }
            }

            if (header.ParentUnicodeName.Length > 0) names.Add(header.ParentUnicodeName);
            foreach (string name in names)
            {
                string file = FileName(name);
                if (file.Length > 0) candidates.Add(System.IO.Path.Combine(folder, file));
            }

            string? mismatch = null;
            var tried = new HashSet<string>(StringComparer.Ordinal);
            foreach (string candidate in candidates)
            {
                string full;
                try
                {
                    if (candidate.IndexOf('\0') >= 0) continue;
                    full = System.IO.Path.GetFullPath(candidate);
                }
                catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException)
                {
                    continue;
                }

                if (!tried.Add(full) || !File.Exists(full)) continue;
                IDiskImage parent = DiskImage.Open(full, chain, child.Path, DiskFormat.Vhd);
                var vhd = (VhdImage)parent;
                if (vhd.Footer.UniqueId == header.ParentUniqueId) return parent;
                mismatch = $"{full} has unique id {vhd.Footer.UniqueId:B}, the child expects {header.ParentUniqueId:B}";
                parent.Dispose();
            }

            if (mismatch != null)
                throw new CorruptImageException(child.Path, $"its parent changed or is another disk: {mismatch}");
            string list = candidates.Count == 0 ? "it names none" : "tried: " + string.Join(", ", tried.Count > 0 ? tried : (IEnumerable<string>)candidates);
            throw new FileNotFoundException($"{child.Path}: parent disk not found ({list})", candidates.Count > 0 ? candidates[0] : null);
        }

        private static string? ReadLocator(VhdImage child, VhdParentLocator locator)
        {
            Encoding? encoding = locator.PlatformCode switch
            {
                PlatformW2ru => Encoding.Unicode,
                PlatformW2ku => Encoding.Unicode,
                PlatformWi2r => Encoding.UTF8,
                PlatformWi2k => Encoding.UTF8,
                PlatformMacX => Encoding.UTF8,
                _ => null,
            };
            if (encoding == null || locator.DataLength == 0) return null;
            if (locator.DataOffset > child._fileLength - locator.DataLength)
                throw new CorruptImageException(child.Path, $"a parent locator's path at {locator.DataOffset} ({locator.DataLength} bytes) lies past the end of the file ({child._fileLength} bytes)");
            var data = new byte[locator.DataLength];
            ReadExactly(child.Path, child._file, locator.DataOffset, data, data.Length);
            string text = encoding.GetString(data).TrimEnd('\0');
            if (locator.PlatformCode == PlatformMacX)
            {
                // A file URL: file://host/path.
                if (!text.StartsWith("file://", StringComparison.OrdinalIgnoreCase)) return null;
                int slash = text.IndexOf('/', 7);
                text = slash < 0 ? "" : Uri.UnescapeDataString(text.Substring(slash));
            }

            return text;
        }

        private static string ToLocalSeparators(string windowsPath) =>
            System.IO.Path.DirectorySeparatorChar == '\\' ? windowsPath : windowsPath.Replace('\\', System.IO.Path.DirectorySeparatorChar);

        private static string FileName(string path)
        {
            int cut = Math.Max(path.LastIndexOf('\\'), path.LastIndexOf('/'));
            string name = path.Substring(cut + 1);
            return name == "." || name == ".." ? "" : name;
        }

        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            StreamIO.CheckRange(offset, length, VirtualSize);
            return DiskExtents.Merge(Extents(offset, length));
        }

        private IEnumerable<DiskExtent> Extents(long offset, long length)
        {
            if (_bat == null)
            {
                foreach (DiskExtent e in SparseFile.GetAllocatedRanges(_file, offset, length)) yield return Clip(e, offset, length);
                yield break;
            }

            var pieces = new List<Piece>();
            long end = offset + length;
            for (long at = offset; at < end;)
            {
                long blockEnd = Math.Min(end, (at / _blockSize + 1) * _blockSize);
                pieces.Clear();
                Map(at, blockEnd - at, pieces);
                foreach (Piece piece in pieces)
                {
                    if (piece.Kind == PieceKind.Zero) continue;
                    if (piece.Kind == PieceKind.Parent)
                    {
                        long within = Math.Min(piece.Length, _parent!.VirtualSize - piece.Guest);
                        if (within <= 0) continue;
                        foreach (DiskExtent e in _parent.GetDataExtents(piece.Guest, within)) yield return e;
                        continue;
                    }

                    // Bytes in the file, less its holes (which read as zeros under any reading of the bitmap).
                    long shift = piece.Guest - piece.Host;
                    foreach (DiskExtent host in SparseFile.GetAllocatedRanges(_file, piece.Host, piece.Length))
                    {
                        long from = Math.Max(host.Offset, piece.Host);
                        long to = Math.Min(host.End, piece.Host + piece.Length);
                        if (to > from) yield return new DiskExtent(from + shift, to - from);
                    }
                }

                at = blockEnd;
            }
        }

        private static DiskExtent Clip(DiskExtent e, long offset, long length)
        {
            long from = Math.Max(e.Offset, offset);
            long to = Math.Min(e.End, offset + length);
            return new DiskExtent(from, Math.Max(0, to - from));
        }

        public void Read(long offset, byte[] buffer, int index, int count)
        {
            StreamIO.CheckBuffer(buffer, index, count);
            StreamIO.CheckRange(offset, count, VirtualSize);
            if (_bat == null)
            {
                ReadFile(offset, buffer, index, count);
                return;
            }

            _pieces.Clear();
            Map(offset, count, _pieces);
            foreach (Piece piece in _pieces)
            {
                int at = index + (int)(piece.Guest - offset);
                int n = (int)piece.Length;
                switch (piece.Kind)
                {
                    case PieceKind.Zero:
                        Array.Clear(buffer, at, n);
                        break;
                    case PieceKind.File:
                        ReadFile(piece.Host, buffer, at, n);
                        break;
                    case PieceKind.Unwritten:
                        ReadFile(piece.Host, buffer, at, n);
                        if (!StreamIO.IsAllZero(buffer, at, n))
                            throw new CorruptImageException(Path, $"guest range [{piece.Guest}, +{n}) is marked unwritten in its block's sector bitmap yet holds data in the file: Windows reads it as zeros, qemu as those bytes; refusing to guess");
                        break;
                    default:
                        ReadParent(piece.Guest, buffer, at, n);
                        break;
                }
            }
        }

        private void ReadFile(long host, byte[] buffer, int index, int count)
        {
            int got = DirectFile.ReadAtMost(_direct, _file, host, buffer, index, count);
            if (got < count)
                throw new CorruptImageException(Path, $"file ends at {host + got}, inside data it maps (it shrank while open?)");
        }

        private void ReadParent(long guest, byte[] buffer, int index, int count)
        {
            // A parent smaller than its child reads as zero past its end.
            long within = Math.Max(0, Math.Min(count, _parent!.VirtualSize - guest));
            if (within > 0) _parent.Read(guest, buffer, index, (int)within);
            if (within < count) Array.Clear(buffer, index + (int)within, count - (int)within);
        }

        private enum PieceKind { Zero, File, Unwritten, Parent }

        private struct Piece
        {
            public PieceKind Kind;
            public long Guest;
            public long Length;
            public long Host;
        }

        /// <summary>Splits a guest range of a dynamic or differencing disk into runs read alike; contiguous runs are merged.</summary>
        private void Map(long offset, long length, List<Piece> pieces)
        {
            bool differencing = _parent != null;
            long end = offset + length;
            while (offset < end)
            {
                long block = offset / _blockSize;
                long inBlock = offset - block * _blockSize;
                long n = Math.Min(_blockSize - inBlock, end - offset);
                uint entry = _bat![block];
                if (entry == UnusedBatEntry)
                {
                    Add(pieces, differencing ? PieceKind.Parent : PieceKind.Zero, offset, n, 0);
                }
                else
                {
                    long data = (long)entry * SectorSize + _bitmapBytes;
                    byte[] bitmap = GetBitmap(block, entry);
                    PieceKind unset = differencing ? PieceKind.Parent : PieceKind.Unwritten;
                    for (long at = inBlock, stop = inBlock + n; at < stop;)
                    {
                        long sector = at / SectorSize;
                        bool set = IsSet(bitmap, sector);
                        long next = NextChange(bitmap, sector, set, (stop + SectorSize - 1) / SectorSize);
                        long runEnd = Math.Min(stop, next * SectorSize);
                        Add(pieces, set ? PieceKind.File : unset, block * _blockSize + at, runEnd - at, data + at);
                        at = runEnd;
                    }
                }

                offset += n;
            }
        }

        /// <summary>The first sector after <paramref name="sector"/> whose bit is not <paramref name="set"/>, or <paramref name="limit"/>.</summary>
        private static long NextChange(byte[] bitmap, long sector, bool set, long limit)
        {
            byte same = set ? (byte)0xff : (byte)0;
            long next = sector + 1;
            while (next < limit)
            {
                // Whole bytes alike go 8 sectors at a time: the usual bitmap is all ones.
                if ((next & 7) == 0 && next + 8 <= limit && bitmap[next >> 3] == same)
                {
                    next += 8;
                    continue;
                }

                if (IsSet(bitmap, next) != set) break;
                next++;
            }

            return Math.Min(next, limit);
        }

        // Sector 0 of a block is the most significant bit of the bitmap's first byte.
        private static bool IsSet(byte[] bitmap, long sector) => (bitmap[sector >> 3] & (0x80 >> (int)(sector & 7))) != 0;

        private static void Add(List<Piece> pieces, PieceKind kind, long guest, long length, long host)
        {
            if (pieces.Count > 0)
            {
                Piece last = pieces[pieces.Count - 1];
                if (last.Kind == kind && last.Guest + last.Length == guest && (kind == PieceKind.Zero || kind == PieceKind.Parent || last.Host + last.Length == host))
                {
                    last.Length += length;
                    pieces[pieces.Count - 1] = last;
                    return;
                }
            }

            pieces.Add(new Piece { Kind = kind, Guest = guest, Length = length, Host = host });
        }

        private byte[] GetBitmap(long block, uint entry)
        {
            if (_bitmaps.TryGetValue(block, out byte[]? bitmap)) return bitmap;
            if (_bitmaps.Count >= BitmapCacheEntries) _bitmaps.Clear();
            bitmap = new byte[_bitmapBytes];
            ReadFile((long)entry * SectorSize, bitmap, 0, bitmap.Length);
            _bitmaps.Add(block, bitmap);
            return bitmap;
        }

        private static void ReadExactly(string path, Stream file, long offset, byte[] buffer, int count)
        {
            file.Position = offset;
            if (StreamIO.ReadAtMost(file, buffer, 0, count) != count)
                throw new CorruptImageException(path, $"file ends inside the {count} bytes at {offset}");
        }

        public void Dispose()
        {
            _parent?.Dispose();
            _direct?.Dispose();
            _file.Dispose();
        }
    }
}
