using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>
    /// Reads the guest view of a qcow2 image (versions 2 and 3) and of its backing chain.
    /// Guest ranges are mapped through the L1/L2 tables into runs (<see cref="Segment"/>) that are merged
    /// while their host bytes stay contiguous, so a large read becomes few host reads.
    /// </summary>
    internal sealed class Qcow2Image : IDiskImage, IImageWarnings
    {
        /// <summary>Bytes of L2 tables kept; 4 MiB maps 32 GiB of guest with 64 KiB clusters.</summary>
        internal const long L2CacheBudgetBytes = 4L * 1024 * 1024;

        private readonly Stream _file;
        private readonly long _fileLength;
        // Where guest clusters live: the image file itself, or its external data file.
        private readonly Stream _data;
        private readonly DirectFile? _direct;
        private readonly long _dataLength;
        private readonly List<string> _warnings;
        private readonly Qcow2Header _header;
        private readonly ulong[] _l1;
        private readonly IDiskImage? _backing;
        private readonly Qcow2L2Cache _l2Cache;
        private readonly int _clusterSize;
        private readonly int _l2Entries;
        private readonly int _subclusterBits;
        private byte[]? _decompressed;
        private ulong _decompressedDescriptor;
        private bool _haveDecompressed;

        private Qcow2Image(string path, Stream file, Qcow2Header header, ulong[] l1, IDiskImage? backing, FileStream? dataFile, List<string> warnings)
        {
            Path = path;
            _file = file;
            _fileLength = file.Length;
            _data = dataFile ?? file;
            DataFilePath = dataFile?.Name;
            _direct = _data is FileStream ? DirectFile.TryOpenForReading(DataFilePath ?? path) : null;
            _dataLength = _data.Length;
            _warnings = warnings;
            _header = header;
            _l1 = l1;
            _backing = backing;
            _clusterSize = header.ClusterSize;
            _l2Entries = 1 << header.L2Bits;
            _subclusterBits = header.HasExtendedL2 ? header.ClusterBits - 5 : header.ClusterBits;
            _l2Cache = new Qcow2L2Cache(_clusterSize, L2CacheBudgetBytes);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Qcow2;
        public long VirtualSize => _header.Size;
        internal Qcow2Header Header => _header;
        internal IDiskImage? Backing => _backing;
        /// <summary>The external data file that holds the guest clusters, or null when they are in the image.</summary>
        internal string? DataFilePath { get; }

        public IReadOnlyList<string> Warnings
        {
            get
            {
                var all = new List<string>(_warnings);
                if (_backing != null) all.AddRange(DiskImage.GetWarnings(_backing));
                return all;
            }
        }

        /// <summary>Host data reads issued so far (tests check that reads are coalesced).</summary>
        internal int HostReadCount { get; private set; }

        internal enum SegmentKind { Data, Zero, Backing, Compressed }

        /// <summary>A guest run with one way of being read; Host is a file offset, or the descriptor of a compressed cluster.</summary>
        internal readonly struct Segment
        {
            public Segment(SegmentKind kind, long guest, long length, long host)
            {
                Kind = kind;
                Guest = guest;
                Length = length;
                Host = host;
            }

            public SegmentKind Kind { get; }
            public long Guest { get; }
            public long Length { get; }
            public long Host { get; }
        }

        /// <summary>Opens a qcow2 image over <paramref name="file"/> (which it then owns) and its backing chain.</summary>
        internal static Qcow2Image Open(string path, Stream file, BackingChain chain)
        {
            Qcow2Header header = Qcow2Header.Read(path, file);
            ulong[] l1 = ReadL1(path, file, header);
            List<string> warnings = Qcow2Health.Check(path, file, header);
            FileStream? data = header.HasDataFile ? OpenDataFile(path, header) : null;
            try
            {
                IDiskImage? backing = header.BackingFileName == null ? null : OpenBacking(path, header, chain);
                return new Qcow2Image(path, file, header, l1, backing, data, warnings);
            }
            catch
            {
                data?.Dispose();
                throw;
            }
        }

        public IEnumerable<DiskExtent> GetDataExtents(long offset, long length)
        {
            StreamIO.CheckRange(offset, length, VirtualSize);
            return DiskExtents.Merge(DataExtents(offset, length));
        }

        public void Read(long offset, byte[] buffer, int index, int count)
        {
            StreamIO.CheckBuffer(buffer, index, count);
            StreamIO.CheckRange(offset, count, VirtualSize);
            foreach (Segment s in Map(offset, count))
            {
                int at = index + (int)(s.Guest - offset);
                int n = (int)s.Length;
                switch (s.Kind)
                {
                    case SegmentKind.Data:
                        HostReadCount++;
                        // Mapping checked that the range lies in the file: short means it shrank since.
                        int got = DirectFile.ReadAtMost(_direct, _data, s.Host, buffer, at, n);
                        if (got < n)
                            throw new CorruptImageException(Path, $"{DataFileName} ends at {s.Host + got}, inside the data of guest offset {s.Guest + got} (it shrank while open?)");
                        break;
                    case SegmentKind.Zero:
                        Array.Clear(buffer, at, n);
                        break;
                    case SegmentKind.Backing:
                        ReadBacking(s.Guest, buffer, at, n);
                        break;
                    case SegmentKind.Compressed:
                        long clusterStart = s.Guest & ~(long)(_clusterSize - 1);
                        byte[] cluster = GetDecompressedCluster((ulong)s.Host, clusterStart);
                        Buffer.BlockCopy(cluster, (int)(s.Guest - clusterStart), buffer, at, n);
                        break;
                }
            }
        }

        /// <summary>The image's persistent bitmaps (empty without the bitmaps extension). A bad directory throws.</summary>
        internal IReadOnlyList<Qcow2Bitmap> ReadBitmaps() => Qcow2Bitmaps.ReadDirectory(Path, _file, _header);

        /// <summary>
        /// The guest ranges written since the persistent dirty bitmap <paramref name="name"/> was created, widened to
        /// units of <paramref name="alignment"/>; or null, with the reason, when the bitmap cannot be trusted to hold
        /// every write (absent, disabled, left in use by a crash, cleared by a writer that does not know bitmaps,
        /// damaged, or of an image whose backing files could have changed underneath it).
        /// </summary>
        internal List<DiskExtent>? GetChangesSince(string name, long alignment, out string reason)
        {
            if (_header.Version < 3) { reason = "a version 2 qcow2 has no persistent bitmaps"; return null; }
            if (_backing != null) { reason = "its bitmaps would not see changes to its backing file"; return null; }
            if (!_header.HasBitmapsExtension) { reason = $"it has no persistent bitmaps (bitmap {name} is gone)"; return null; }
            if ((_header.AutoclearFeatures & AutoclearBitmaps) == 0)
            {
                reason = "a program that does not keep bitmaps wrote to it since (autoclear bit 0 is clear)";
                return null;
            }

            try
            {
                Qcow2Bitmap? bitmap = null;
                foreach (var b in ReadBitmaps())
                {
                    if (b.Name == name) bitmap = b;
                }

                if (bitmap == null) { reason = $"bitmap {name} is gone"; return null; }
                if (bitmap.Type != BitmapTypeDirty) { reason = $"bitmap {name} is not a dirty-tracking bitmap (type {bitmap.Type})"; return null; }
                if (bitmap.InUse) { reason = $"bitmap {name} was left in use by a writer that stopped uncleanly"; return null; }
                if (!bitmap.Auto) { reason = $"bitmap {name} is disabled"; return null; }
                if (bitmap.ExtraDataSize != 0 && (bitmap.Flags & BitmapFlagExtraDataCompatible) == 0)
                {
                    reason = $"bitmap {name} has extra data of an unknown kind";
                    return null;
                }

                reason = "";
                return Qcow2Bitmaps.ReadDirtyExtents(Path, _file, _header, bitmap, alignment);
            }
            catch (CorruptImageException e)
            {
                reason = "its bitmaps are damaged: " + e.Message;
                return null;
            }
            catch (TooManyChangesException e)
            {
                reason = e.Message;
                return null;
            }
        }

        public void Dispose()
        {
            _backing?.Dispose();
            _direct?.Dispose();
            if (_data != _file) _data.Dispose();
            _file.Dispose();
        }

        private string DataFileName => DataFilePath == null ? "the file" : $"the external data file {DataFilePath}";

        /// <summary>
        /// Opens the external data file named in the header, relative to the image's folder (qemu takes a relative name
        /// relative to its working folder, which is the image's when qemu-img created it there).
        /// </summary>
        private static FileStream OpenDataFile(string path, Qcow2Header header)
        {
            string name = header.DataFileName!;
            string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".";
            string resolved;
            try
            {
                resolved = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, name));
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException)
            {
                throw new CorruptImageException(path, $"external data file name '{name}' is not a usable path: {e.Message}");
            }

            if (string.Equals(resolved, System.IO.Path.GetFullPath(path), StringComparison.Ordinal))
                throw new CorruptImageException(path, "the image names itself as its external data file");
            if (Directory.Exists(resolved))
                throw new CorruptImageException(path, $"external data file '{resolved}' is a directory");
            if (!File.Exists(resolved))
                throw new FileNotFoundException($"{path}: external data file '{resolved}' (named '{name}') not found", resolved);
            return DiskImage.OpenRead(resolved);
        }

        private static ulong[] ReadL1(string path, Stream file, Qcow2Header header)
        {
            // Size and position were checked against the file and the 32 MiB cap by the header.
            int bytes = header.L1Size * L1EntrySize;
            var raw = new byte[bytes];
            file.Position = header.L1TableOffset;
            if (StreamIO.ReadAtMost(file, raw, 0, bytes) != bytes)
                throw new CorruptImageException(path, "file ends inside the L1 table");
            var l1 = new ulong[header.L1Size];
            for (int i = 0; i < l1.Length; i++)
            {
                l1[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * L1EntrySize));
            }

            return l1;
        }

        private static IDiskImage OpenBacking(string path, Qcow2Header header, BackingChain chain)
        {
            string name = header.BackingFileName!;
            string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path)) ?? ".";
            string resolved;
            try
            {
                resolved = System.IO.Path.GetFullPath(System.IO.Path.Combine(folder, name));
            }
            catch (Exception e) when (e is ArgumentException || e is NotSupportedException || e is PathTooLongException)
            {
                throw new CorruptImageException(path, $"backing file name '{name}' is not a usable path: {e.Message}");
            }

            DiskFormat? declared;
            switch (header.BackingFormat)
            {
                case null:
                    declared = null; // probe by content, as qemu did before backing formats were recorded
                    break;
                case "qcow2":
                    declared = DiskFormat.Qcow2;
                    break;
                case "raw":
                    declared = DiskFormat.Raw;
                    break;
                case "vpc":
                    declared = DiskFormat.Vhd;
                    break;
                case "vhdx":
                    declared = DiskFormat.Vhdx;
                    break;
                default:
                    throw new CorruptImageException(path, $"backing format '{header.BackingFormat}' of '{name}' is not supported (qcow2, raw, vpc or vhdx)");
            }

            if (Directory.Exists(resolved))
                throw new CorruptImageException(path, $"backing file '{resolved}' is a directory");
            if (!File.Exists(resolved))
                throw new FileNotFoundException($"{path}: backing file '{resolved}' (named '{name}') not found", resolved);
            return DiskImage.Open(resolved, chain, path, declared);
        }

        private IEnumerable<DiskExtent> DataExtents(long offset, long length)
        {
            foreach (Segment s in Map(offset, length))
            {
                if (s.Kind == SegmentKind.Data && DataFilePath != null)
                {
                    // An external data file, raw ones above all, maps every cluster and holds mostly holes: skip them.
                    foreach (DiskExtent host in SparseFile.GetAllocatedRanges((FileStream)_data, s.Host, s.Length))
                    {
                        long from = Math.Max(host.Offset, s.Host);
                        long to = Math.Min(host.End, s.Host + s.Length);
                        if (to > from) yield return new DiskExtent(from - s.Host + s.Guest, to - from);
                    }
                }
                else if (s.Kind == SegmentKind.Data || s.Kind == SegmentKind.Compressed)
                {
                    yield return new DiskExtent(s.Guest, s.Length);
                }
                else if (s.Kind == SegmentKind.Backing && _backing != null && s.Guest < _backing.VirtualSize)
                {
                    long within = Math.Min(s.Length, _backing.VirtualSize - s.Guest);
                    foreach (DiskExtent e in _backing.GetDataExtents(s.Guest, within))
                    {
                        yield return e;
                    }
                }
            }
        }

        /// <summary>Maps [offset, offset + length) to merged segments, one L2 table at a time.</summary>
        internal IEnumerable<Segment> Map(long offset, long length)
        {
            var pending = new List<Segment>();
            int tableShift = _header.ClusterBits + _header.L2Bits;
            long pos = offset;
            long end = offset + length;
            while (pos < end)
            {
                long l1Index = pos >> tableShift;
                long tableEnd = Math.Min(end, (l1Index + 1) << tableShift);
                MapTable(l1Index, pos, tableEnd, pending);
                pos = tableEnd;

                // The last segment may still grow into the next table; hand out the others.
                for (int i = 0; i < pending.Count - 1; i++)
                {
                    yield return pending[i];
                }

                if (pending.Count > 1)
                {
                    Segment last = pending[pending.Count - 1];
                    pending.Clear();
                    pending.Add(last);
                }
            }

            foreach (Segment s in pending)
            {
                yield return s;
            }
        }

        private void MapTable(long l1Index, long pos, long tableEnd, List<Segment> output)
        {
            ulong l1Entry = l1Index < _l1.Length ? _l1[l1Index] : 0;
            long l2Offset = (long)(l1Entry & OffsetMask);
            if (l2Offset == 0)
            {
                Append(output, SegmentKind.Backing, pos, tableEnd - pos, 0);
                return;
            }

            ulong[] l2 = GetL2Table(l2Offset, l1Index);
            bool extended = _header.HasExtendedL2;
            int cb = _header.ClusterBits;
            while (pos < tableEnd)
            {
                long clusterStart = pos & ~(long)(_clusterSize - 1);
                long clusterEnd = Math.Min(clusterStart + _clusterSize, tableEnd);
                int index = (int)((pos >> cb) & (_l2Entries - 1));
                ulong entry = extended ? l2[2 * index] : l2[index];
                if ((entry & FlagCompressed) != 0)
                {
                    long descriptor = (long)(entry & ~(FlagCopied | FlagCompressed));
                    CheckCompressed((ulong)descriptor, clusterStart);
                    Append(output, SegmentKind.Compressed, pos, clusterEnd - pos, descriptor);
                }
                else if (!extended)
                {
                    MapStandardCluster(entry, clusterStart, pos, clusterEnd, output);
                }
                else
                {
                    MapExtendedCluster(entry, l2[2 * index + 1], clusterStart, pos, clusterEnd, output);
                }

                pos = clusterEnd;
            }
        }

        private void MapStandardCluster(ulong entry, long clusterStart, long pos, long clusterEnd, List<Segment> output)
        {
            long host = (long)(entry & OffsetMask);
            if ((entry & FlagZero) != 0)
            {
                if (_header.Version < 3)
                    throw new CorruptImageException(Path, $"L2 entry for guest offset {clusterStart} has the zero flag, which version 2 does not have");
                Append(output, SegmentKind.Zero, pos, clusterEnd - pos, 0);
            }
            else if (host == 0 && !(DataFilePath != null && (entry & FlagCopied) != 0))
            {
                // Offset 0 is unallocated, except in an external data file, where the copied flag tells cluster 0 apart.
                Append(output, SegmentKind.Backing, pos, clusterEnd - pos, 0);
            }
            else
            {
                CheckDataCluster(host, clusterStart, _clusterSize);
                Append(output, SegmentKind.Data, pos, clusterEnd - pos, host + (pos - clusterStart));
            }
        }

        private void MapExtendedCluster(ulong entry, ulong bitmap, long clusterStart, long pos, long clusterEnd, List<Segment> output)
        {
            long host = (long)(entry & OffsetMask);
            uint allocated = (uint)bitmap;
            uint zero = (uint)(bitmap >> 32);
            if ((entry & FlagZero) != 0)
                throw new CorruptImageException(Path, $"extended L2 entry for guest offset {clusterStart} sets bit 0, which is reserved");
            if ((allocated & zero) != 0)
                throw new CorruptImageException(Path, $"extended L2 entry for guest offset {clusterStart} marks subclusters both allocated and zero (bitmap 0x{bitmap:x16})");
            if (allocated != 0)
            {
                if (host == 0 && !(DataFilePath != null && (entry & FlagCopied) != 0))
                    throw new CorruptImageException(Path, $"extended L2 entry for guest offset {clusterStart} has allocated subclusters but no host cluster");
                // Only the subclusters up to the last allocated one need be in the file: qemu writes no more.
                int last = 31 - LeadingZeros(allocated);
                CheckDataCluster(host, clusterStart, (last + 1) << _subclusterBits);
            }

            while (pos < clusterEnd)
            {
                int sub = (int)((pos - clusterStart) >> _subclusterBits);
                long subEnd = Math.Min(clusterStart + ((long)(sub + 1) << _subclusterBits), clusterEnd);
                uint bit = 1u << sub;
                if ((allocated & bit) != 0)
                    Append(output, SegmentKind.Data, pos, subEnd - pos, host + (pos - clusterStart));
                else if ((zero & bit) != 0)
                    Append(output, SegmentKind.Zero, pos, subEnd - pos, 0);
                else
                    Append(output, SegmentKind.Backing, pos, subEnd - pos, 0);
                pos = subEnd;
            }
        }

        private static void Append(List<Segment> output, SegmentKind kind, long guest, long length, long host)
        {
            if (output.Count > 0 && kind != SegmentKind.Compressed)
            {
                Segment last = output[output.Count - 1];
                if (last.Kind == kind && last.Guest + last.Length == guest && (kind != SegmentKind.Data || last.Host + last.Length == host))
                {
                    output[output.Count - 1] = new Segment(kind, last.Guest, last.Length + length, last.Host);
                    return;
                }
            }

            output.Add(new Segment(kind, guest, length, host));
        }

        /// <summary>
        /// Checks a data cluster before anything is read from it: aligned, and the <paramref name="used"/> bytes the guest
        /// reads from it (fewer in the disk's last cluster) inside the file. A cluster past the end of the file is a
        /// truncated or damaged image: qemu would read it as zeros, which would be a wrong disk, not a sparse one.
        /// </summary>
        private void CheckDataCluster(long host, long guest, long used)
        {
            if (host % _clusterSize != 0)
                throw new CorruptImageException(Path, $"data cluster for guest offset {guest} is at host offset {host}, not aligned to the cluster size {_clusterSize}");
            if (DataFilePath != null && host != guest)
                throw new CorruptImageException(Path, $"data cluster for guest offset {guest} is at offset {host} of the external data file; it must be at its guest offset");
            long needed = Math.Min(used, VirtualSize - guest);
            if (host > _dataLength - needed)
                throw new CorruptImageException(Path, $"data cluster for guest offset {guest} is at host offset {host} (+{needed} bytes), past the end of {DataFileName} ({_dataLength} bytes): the image was cut short or the entry is damaged");
        }

        private void CheckCompressed(ulong descriptor, long guest)
        {
            if (DataFilePath != null)
                throw new CorruptImageException(Path, $"L2 entry for guest offset {guest} is compressed, which an image with an external data file cannot have");
            int x = 62 - (_header.ClusterBits - 8);
            long hostOffset = (long)(descriptor & ((1UL << x) - 1));
            if (hostOffset < _clusterSize || hostOffset >= _fileLength)
                throw new CorruptImageException(Path, $"compressed cluster for guest offset {guest} is at host offset {hostOffset}, outside the data area of the file ({_fileLength} bytes)");
        }

        private static int LeadingZeros(uint value)
        {
            int n = 0;
            for (uint bit = 1u << 31; bit != 0 && (value & bit) == 0; bit >>= 1) n++;
            return n;
        }

        private ulong[] GetL2Table(long offset, long l1Index)
        {
            if (_l2Cache.TryGet(offset, out ulong[] cached)) return cached;
            if (offset % _clusterSize != 0)
                throw new CorruptImageException(Path, $"L1 entry {l1Index} points at an L2 table at {offset}, not aligned to the cluster size {_clusterSize}");
            if (offset > _fileLength - _clusterSize)
                throw new CorruptImageException(Path, $"L1 entry {l1Index} points at an L2 table at {offset}, outside the file ({_fileLength} bytes)");

            byte[] raw = ArrayPool<byte>.Shared.Rent(_clusterSize);
            try
            {
                _file.Position = offset;
                if (StreamIO.ReadAtMost(_file, raw, 0, _clusterSize) != _clusterSize)
                    throw new CorruptImageException(Path, $"file ends inside the L2 table at {offset}");
                var table = new ulong[_clusterSize / sizeof(ulong)];
                for (int i = 0; i < table.Length; i++)
                {
                    table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * sizeof(ulong)));
                }

                _l2Cache.Add(offset, table);
                return table;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(raw);
            }
        }

        private void ReadBacking(long guest, byte[] buffer, int index, int count)
        {
            // A backing file shorter than this image reads as zero past its end.
            long within = _backing == null ? 0 : Math.Max(0, Math.Min(count, _backing.VirtualSize - guest));
            if (within > 0)
            {
                _backing!.Read(guest, buffer, index, (int)within);
            }

            if (within < count)
            {
                Array.Clear(buffer, index + (int)within, count - (int)within);
            }
        }

        private byte[] GetDecompressedCluster(ulong descriptor, long guestCluster)
        {
            if (_haveDecompressed && _decompressedDescriptor == descriptor && _decompressed != null)
                return _decompressed;

            // Descriptor: bits 0..x-1 host byte offset, bits x..61 additional 512-byte sectors.
            int x = 62 - (_header.ClusterBits - 8);
            long hostOffset = (long)(descriptor & ((1UL << x) - 1));
            long sectors = (long)((descriptor >> x) & ((1UL << (62 - x)) - 1)) + 1;
            long compressedSize = sectors * CompressedSectorSize - (hostOffset & (CompressedSectorSize - 1));
            if (hostOffset < _clusterSize || hostOffset >= _fileLength)
                throw new CorruptImageException(Path, $"compressed cluster for guest offset {guestCluster} is at host offset {hostOffset}, outside the data area of the file ({_fileLength} bytes)");

            // compressedSize is at most two clusters by construction of the descriptor; the tail may pass EOF.
            int available = (int)Math.Min(compressedSize, _fileLength - hostOffset);
            byte[] input = ArrayPool<byte>.Shared.Rent(available);
            try
            {
                _file.Position = hostOffset;
                if (StreamIO.ReadAtMost(_file, input, 0, available) != available)
                    throw new CorruptImageException(Path, $"file ends inside the compressed cluster at {hostOffset}");
                _haveDecompressed = false;
                _decompressed ??= new byte[_clusterSize];
                HostReadCount++;
                Qcow2Compression.Decompress(Path, _header.CompressionType, input, available, _decompressed, _clusterSize, guestCluster);
                _decompressedDescriptor = descriptor;
                _haveDecompressed = true;
                return _decompressed;
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(input);
            }
        }
    }
}
