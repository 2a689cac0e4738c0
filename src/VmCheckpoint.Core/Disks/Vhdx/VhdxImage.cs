using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>
    /// A VHDX disk (fixed, dynamic or differencing) opened read-only. A log that needs replay is replayed in
    /// memory (see docs-vhdx-log.md); differencing disks read through their parent chain.
    /// </summary>
    internal sealed class VhdxImage : IDiskImage
    {
        private readonly VhdxFileReader _file;
        private readonly ulong[] _bat;
        private readonly long _chunkRatio;
        private readonly int _bitmapBytesPerBlock;
        private readonly Dictionary<long, byte[]> _bitmaps = new Dictionary<long, byte[]>();
        private readonly List<Piece> _pieces = new List<Piece>();
        private VhdxImage? _parent;

        private VhdxImage(VhdxFileReader file, VhdxHeader header, VhdxMetadata metadata, ulong[] bat)
        {
            _file = file;
            Header = header;
            Metadata = metadata;
            _bat = bat;
            _chunkRatio = ChunkRatio(metadata.LogicalSectorSize, metadata.BlockSize);
            _bitmapBytesPerBlock = metadata.BlockSize / metadata.LogicalSectorSize / 8;
        }

        public string Path => _file.Path;
        public DiskFormat Format => DiskFormat.Vhdx;
        public long VirtualSize => Metadata.VirtualSize;
        internal VhdxHeader Header { get; }
        internal VhdxMetadata Metadata { get; }
        internal VhdxImage? Parent => _parent;

        /// <summary>True if <paramref name="firstBytes"/> (at least 8 bytes from offset 0) start with "vhdxfile".</summary>
        public static bool HasSignature(byte[] firstBytes) =>
            firstBytes.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(firstBytes) == FileSignature;

        /// <summary>Opens a VHDX and, for a differencing disk, its parents.</summary>
        public static VhdxImage Open(string path)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            return Open(path, new List<string>());
        }

        private static VhdxImage Open(string path, List<string> chain)
        {
            string fullPath = System.IO.Path.GetFullPath(path);
            chain.Add(fullPath);
            var file = new VhdxFileReader(path);
            VhdxImage? image = null;
            try
            {
                image = Load(file);
                if (image.Metadata.HasParent) image._parent = OpenParent(image, chain);
                return image;
            }
            catch
            {
                if (image != null) image.Dispose();
                else file.Dispose();
                throw;
            }
        }

        private static VhdxImage Load(VhdxFileReader file)
        {
            if (file.PhysicalLength < HeaderSectionSize)
                throw new CorruptImageException(file.Path, $"file is {file.PhysicalLength} bytes, smaller than the 1 MiB VHDX header section");
            var buffer = new byte[HeaderSize];
            file.ReadExactly(FileIdentifierOffset, buffer, 0, 8);
            if (!HasSignature(buffer))
                throw new CorruptImageException(file.Path, "file identifier is not 'vhdxfile': not a VHDX");

            VhdxHeader header = ReadCurrentHeader(file, buffer);
            var log = new VhdxRegion(0, 0);
            if (header.LogGuid != Guid.Empty || header.LogLength != 0)
            {
                if (header.LogLength == 0 || header.LogLength % RegionAlignment != 0)
                    throw new CorruptImageException(file.Path, $"header log length {header.LogLength} is not a non-zero multiple of 1 MiB");
                if (header.LogOffset < HeaderSectionSize || header.LogOffset % RegionAlignment != 0 || header.LogOffset > file.PhysicalLength - header.LogLength)
                    throw new CorruptImageException(file.Path, $"header log [{header.LogOffset}, +{header.LogLength}) is misaligned or past the end of the file");
                log = new VhdxRegion(header.LogOffset, header.LogLength);
            }
            if (header.LogGuid != Guid.Empty)
            {
                if (header.LogLength > MaxLogLength)
                    throw new CorruptImageException(file.Path, $"log of {header.LogLength} bytes needs replay and is larger than the {MaxLogLength} bytes this reader replays in memory: open the disk in Hyper-V once");
                VhdxLog.Replay? replay = VhdxLog.Read(file, header);
                if (replay != null) file.ApplyLog(replay.Writes, replay.LastFileOffset);
            }

            VhdxRegionTable regions = VhdxRegionTable.Read(file, log);
            VhdxMetadata metadata = VhdxMetadata.Read(file, regions.Metadata);
            ulong[] bat = ReadBat(file, regions, log, metadata);
            return new VhdxImage(file, header, metadata, bat);
        }

        private static VhdxHeader ReadCurrentHeader(VhdxFileReader file, byte[] buffer)
        {
            file.ReadExactly(Header1Offset, buffer, 0, HeaderSize);
            VhdxHeader? first = VhdxHeader.TryParse(buffer, out string reason1);
            file.ReadExactly(Header2Offset, buffer, 0, HeaderSize);
            VhdxHeader? second = VhdxHeader.TryParse(buffer, out string reason2);
            if (first == null && second == null)
                throw new CorruptImageException(file.Path, $"both headers are invalid: header 1 {reason1}; header 2 {reason2}");
            if (first == null) return second!;
            if (second == null) return first;
            return second.SequenceNumber > first.SequenceNumber ? second : first;
        }

        private static ulong[] ReadBat(VhdxFileReader file, VhdxRegionTable regions, VhdxRegion log, VhdxMetadata m)
        {
            long entries = BatEntryCount(m.VirtualSize, m.BlockSize, m.LogicalSectorSize, m.HasParent);
            if (entries * BatEntrySize > regions.Bat.Length)
                throw new CorruptImageException(file.Path, $"BAT region of {regions.Bat.Length} bytes is too small for the {entries} entries the disk needs");
            // Bounded by the region length, which was checked against the file's real length.
            var bat = new ulong[entries];
            byte[] chunk = System.Buffers.ArrayPool<byte>.Shared.Rent(MiB);
            try
            {
                for (long done = 0; done < entries;)
                {
                    int n = (int)Math.Min(MiB / BatEntrySize, entries - done);
                    file.ReadExactly(regions.Bat.Offset + done * BatEntrySize, chunk, 0, n * BatEntrySize);
                    for (int i = 0; i < n; i++)
                        bat[done + i] = BinaryPrimitives.ReadUInt64LittleEndian(chunk.AsSpan(i * BatEntrySize));
                    done += n;
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(chunk);
            }

            long chunkRatio = ChunkRatio(m.LogicalSectorSize, m.BlockSize);
            long blocks = DataBlockCount(m.VirtualSize, m.BlockSize);
            var forbidden = new[] { regions.Bat, regions.Metadata, log };
            if (m.HasParent)
            {
                for (long c = 0; c * chunkRatio < blocks; c++)
                {
                    ulong entry = bat[BitmapBatIndex(c, chunkRatio)];
                    int state = (int)(entry & BatStateMask);
                    if (state == BitmapPresent) CheckPlacement(file, entry, SectorBitmapBlockSize, forbidden, $"sector bitmap block {c}");
                    else if (state != BitmapNotPresent)
                        throw new CorruptImageException(file.Path, $"sector bitmap block {c} has invalid state {state}");
                }
            }
            for (long b = 0; b < blocks; b++)
            {
                ulong entry = bat[PayloadBatIndex(b, chunkRatio)];
                int state = (int)(entry & BatStateMask);
                switch (state)
                {
                    case PayloadNotPresent:
                    case PayloadUndefined:
                    case PayloadZero:
                    case PayloadUnmapped:
                        break;
                    case PayloadFullyPresent:
                        CheckPlacement(file, entry, Math.Min(m.BlockSize, m.VirtualSize - b * m.BlockSize), forbidden, $"payload block {b}");
                        break;
                    case PayloadPartiallyPresent:
                        if (!m.HasParent)
                            throw new CorruptImageException(file.Path, $"payload block {b} is partially present in a disk without a parent");
                        if ((int)(bat[BitmapBatIndex(b / chunkRatio, chunkRatio)] & BatStateMask) != BitmapPresent)
                            throw new CorruptImageException(file.Path, $"payload block {b} is partially present but its sector bitmap block is not");
                        CheckPlacement(file, entry, Math.Min(m.BlockSize, m.VirtualSize - b * m.BlockSize), forbidden, $"payload block {b}");
                        break;
                    default:
                        throw new CorruptImageException(file.Path, $"payload block {b} has invalid state {state}");
                }
            }
            return bat;
        }

        private static void CheckPlacement(VhdxFileReader file, ulong entry, long length, VhdxRegion[] forbidden, string what)
        {
            ulong megabytes = entry >> BatFileOffsetShift;
            long offset = (long)megabytes * MiB; // at most 2^44 MiB = 2^64 bytes: compare before multiplying
            if (megabytes > (ulong)(file.Length / MiB) || offset < HeaderSectionSize || offset > file.Length - length)
                throw new CorruptImageException(file.Path, $"{what} at file offset {megabytes} MiB (+{length} bytes) lies outside the file ({file.Length} bytes) or in its header section");
            foreach (VhdxRegion region in forbidden)
            {
                if (region.Length != 0 && region.Overlaps(offset, length))
                    throw new CorruptImageException(file.Path, $"{what} at file offset {offset} overlaps the BAT, the metadata or the log");
            }
        }

        private static VhdxImage OpenParent(VhdxImage child, List<string> chain)
        {
            Dictionary<string, string> locator = child.Metadata.ParentLocator!;
            if (!locator.TryGetValue("parent_linkage", out string? linkageText) || !Guid.TryParse(linkageText, out Guid linkage))
                throw new CorruptImageException(child.Path, "parent locator has no valid parent_linkage GUID");
            Guid? linkage2 = locator.TryGetValue("parent_linkage2", out string? text2) && Guid.TryParse(text2, out Guid parsed2) ? parsed2 : (Guid?)null;

            var candidates = new List<string>();
            string childFolder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(child.Path)) ?? ".";
            if (locator.TryGetValue("relative_path", out string? relative))
                candidates.Add(System.IO.Path.Combine(childFolder, ToLocalSeparators(relative)));
            foreach (string key in new[] { "volume_path", "absolute_win32_path" })
            {
                if (!locator.TryGetValue(key, out string? absolute)) continue;
                candidates.Add(absolute);
                if (!RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) candidates.Add(ToLocalSeparators(absolute));
            }
            string? parentPath = null;
            foreach (string candidate in candidates)
            {
                if (candidate.IndexOfAny(System.IO.Path.GetInvalidPathChars()) < 0 && File.Exists(candidate))
                {
                    parentPath = candidate;
                    break;
                }
            }
            if (parentPath == null)
                throw new FileNotFoundException($"{child.Path}: parent disk not found; tried: {string.Join(", ", candidates)}", candidates.Count > 0 ? candidates[0] : null);

            string parentFull = System.IO.Path.GetFullPath(parentPath);
            StringComparison comparison = RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            if (chain.Exists(p => string.Equals(p, parentFull, comparison)))
                throw new CorruptImageException(child.Path, $"parent chain loops back to {parentFull}");
            if (chain.Count >= MaxParentDepth)
                throw new CorruptImageException(child.Path, $"parent chain is deeper than {MaxParentDepth} disks");

            VhdxImage parent = Open(parentFull, chain);
            try
            {
                Guid data = parent.Header.DataWriteGuid;
                if (data != linkage && data != linkage2)
                    throw new CorruptImageException(child.Path, $"parent changed: {parentFull} has DataWriteGuid {data:B}, the child expects {linkage:B}");
                if (parent.VirtualSize != child.VirtualSize || parent.Metadata.LogicalSectorSize != child.Metadata.LogicalSectorSize)
                    throw new CorruptImageException(child.Path, $"parent {parentFull} has size {parent.VirtualSize} and {parent.Metadata.LogicalSectorSize}-byte sectors; the child has {child.VirtualSize} and {child.Metadata.LogicalSectorSize}");
                return parent;
            }
            catch
            {
                parent.Dispose();
                throw;
            }
        }

        private static string ToLocalSeparators(string windowsPath) =>
            System.IO.Path.DirectorySeparatorChar == '\\' ? windowsPath : windowsPath.Replace('\\', System.IO.Path.DirectorySeparatorChar);

        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            CheckRange(offset, length);
            return Extents(offset, length);
        }

        private IEnumerable<DiskExtent> Extents(long offset, long length)
        {
            long pendingStart = -1, pendingEnd = -1;
            var pieces = new List<Piece>();
            long end = offset + length;
            int blockSize = Metadata.BlockSize;
            for (long at = offset; at < end;)
            {
                long blockEnd = Math.Min(end, (at / blockSize + 1) * blockSize);
                pieces.Clear();
                Map(at, blockEnd - at, pieces);
                foreach (Piece piece in pieces)
                {
                    if (piece.Kind == PieceKind.Zero) continue;
                    IEnumerable<DiskExtent> found = piece.Kind == PieceKind.File
                        ? HostDataAsGuest(piece)
                        : _parent!.GetDataExtents(piece.GuestOffset, piece.Length);
                    foreach (DiskExtent extent in found)
                    {
                        if (extent.Offset == pendingEnd)
                        {
                            pendingEnd = extent.End;
                            continue;
                        }
                        if (pendingStart >= 0) yield return new DiskExtent(pendingStart, pendingEnd - pendingStart);
                        pendingStart = extent.Offset;
                        pendingEnd = extent.End;
                    }
                }
                at = blockEnd;
            }
            if (pendingStart >= 0) yield return new DiskExtent(pendingStart, pendingEnd - pendingStart);
        }

        /// <summary>
        /// A present piece's data, less the holes of the file under it: a block qemu allocated for one write is
        /// mostly holes, and reading them would cost the time of zeros (the bench's scattered 1 MiB writes into
        /// 32 MiB blocks read 31 MiB of zeros each).
        /// </summary>
        private IEnumerable<DiskExtent> HostDataAsGuest(Piece piece)
        {
            long shift = piece.GuestOffset - piece.HostOffset;
            foreach (DiskExtent host in _file.DataRanges(piece.HostOffset, piece.Length))
            {
                long from = Math.Max(host.Offset, piece.HostOffset);
                long to = Math.Min(host.End, piece.HostOffset + piece.Length);
                if (to > from) yield return new DiskExtent(from + shift, to - from);
            }
        }

        public void Read(long offset, byte[] buffer, int index, int count)
        {
            if (buffer == null) throw new ArgumentNullException(nameof(buffer));
            if (index < 0 || count < 0 || index > buffer.Length - count) throw new ArgumentOutOfRangeException(nameof(count));
            CheckRange(offset, count);
            _pieces.Clear();
            Map(offset, count, _pieces);
            foreach (Piece piece in _pieces)
            {
                int at = index + (int)(piece.GuestOffset - offset);
                switch (piece.Kind)
                {
                    case PieceKind.Zero:
                        Array.Clear(buffer, at, (int)piece.Length);
                        break;
                    case PieceKind.File:
                        _file.ReadExactly(piece.HostOffset, buffer, at, (int)piece.Length);
                        break;
                    default:
                        _parent!.Read(piece.GuestOffset, buffer, at, (int)piece.Length);
                        break;
                }
            }
        }

        private void CheckRange(long offset, long length)
        {
            if (offset < 0 || length < 0 || offset > VirtualSize - length)
                throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{length}) is outside the {VirtualSize}-byte disk");
        }

        private enum PieceKind { Zero, File, Parent }

        private struct Piece
        {
            public PieceKind Kind;
            public long GuestOffset;
            public long Length;
            public long HostOffset;
        }

        /// <summary>Splits a guest range into runs read from this file, from the parent, or as zeros; contiguous runs are merged.</summary>
        private void Map(long offset, long length, List<Piece> pieces)
        {
            int blockSize = Metadata.BlockSize;
            int sectorSize = Metadata.LogicalSectorSize;
            PieceKind absent = _parent != null ? PieceKind.Parent : PieceKind.Zero;
            long end = offset + length;
            while (offset < end)
            {
                long block = offset / blockSize;
                long inBlock = offset - block * blockSize;
                long n = Math.Min(blockSize - inBlock, end - offset);
                ulong entry = _bat[PayloadBatIndex(block, _chunkRatio)];
                long host = (long)(entry >> BatFileOffsetShift) * MiB;
                switch ((int)(entry & BatStateMask))
                {
                    case PayloadFullyPresent:
                        Add(pieces, PieceKind.File, offset, n, host + inBlock);
                        break;
                    case PayloadPartiallyPresent:
                        byte[] bitmap = GetBitmap(block);
                        for (long at = inBlock, stop = inBlock + n; at < stop;)
                        {
                            long sector = at / sectorSize;
                            bool present = IsSet(bitmap, sector);
                            long next = sector + 1;
                            while (next * sectorSize < stop && IsSet(bitmap, next) == present) next++;
                            long runEnd = Math.Min(stop, next * sectorSize);
                            Add(pieces, present ? PieceKind.File : PieceKind.Parent, block * blockSize + at, runEnd - at, host + at);
                            at = runEnd;
                        }
                        break;
                    case PayloadZero:
                        Add(pieces, PieceKind.Zero, offset, n, 0);
                        break;
                    default: // not present, undefined, unmapped: the parent's data, or zeros without a parent
                        Add(pieces, absent, offset, n, 0);
                        break;
                }
                offset += n;
            }
        }

        private static bool IsSet(byte[] bitmap, long sector) => (bitmap[sector >> 3] & (1 << (int)(sector & 7))) != 0;

        private static void Add(List<Piece> pieces, PieceKind kind, long guestOffset, long length, long hostOffset)
        {
            if (pieces.Count > 0)
            {
                Piece last = pieces[pieces.Count - 1];
                if (last.Kind == kind && last.GuestOffset + last.Length == guestOffset
                    && (kind != PieceKind.File || last.HostOffset + last.Length == hostOffset))
                {
                    last.Length += length;
                    pieces[pieces.Count - 1] = last;
                    return;
                }
            }
            pieces.Add(new Piece { Kind = kind, GuestOffset = guestOffset, Length = length, HostOffset = hostOffset });
        }

        /// <summary>The sector bitmap of one payload block (bit 0 of byte 0 is its first sector), cached.</summary>
        private byte[] GetBitmap(long block)
        {
            if (_bitmaps.TryGetValue(block, out byte[]? bitmap)) return bitmap;
            ulong entry = _bat[BitmapBatIndex(block / _chunkRatio, _chunkRatio)];
            long host = (long)(entry >> BatFileOffsetShift) * MiB + (block % _chunkRatio) * _bitmapBytesPerBlock;
            bitmap = new byte[_bitmapBytesPerBlock];
            _file.ReadExactly(host, bitmap, 0, bitmap.Length);
            _bitmaps.Add(block, bitmap);
            return bitmap;
        }

        public void Dispose()
        {
            _parent?.Dispose();
            _file.Dispose();
        }
    }
}
