using System;
using System.Buffers.Binary;
using System.IO;
using static VmCheckpoint.Core.Disks.Vhd.VhdFormat;

namespace VmCheckpoint.Core.Disks.Vhd
{
    /// <summary>
    /// Writes a new dynamic VHD (a restore target). Blocks are appended as the first data in them arrives, in 2 MiB
    /// blocks whose sector bitmaps mark every sector written (unwritten ones are holes and read as zeros, as qemu writes
    /// them); all-zero clusters are never written, so the file stays sparse. The BAT, the dynamic disk header and the
    /// footer and its copy are written by <see cref="Complete"/>, the copy at offset 0 last: until then the file is not
    /// a VHD.
    /// </summary>
    /// <remarks>
    /// Layout: footer copy (512 bytes), dynamic disk header (1024), BAT, then blocks, each placed so that its data
    /// starts on a 4 KiB boundary (direct writes), then the footer. The size is the footer's current_size; the CHS
    /// geometry is the specification's for that size, or the largest one where that geometry's size would differ,
    /// which tells every reader (qemu included) to take current_size.
    /// </remarks>
    internal sealed class VhdImageWriter : IDiskImageWriter
    {
        public const int BlockSize = 2 * 1024 * 1024;
        private const int ClusterSize = 64 * 1024;
        private const int DataAlignment = DirectFile.Alignment;
        private const long HeaderOffset = FooterSize;
        private const long BatOffset = HeaderOffset + DynamicHeaderSize;
        private const string Creator = "vmcp";
        private const uint CreatorHostOsWindows = 0x5769326B; // "Wi2k", what Windows and qemu write

        private readonly FileStream _file;
        private readonly SequentialClusterBuffer _buffer;
        private readonly WriteBehind _writeBehind;
        private readonly DirectFile? _direct;
        private readonly uint[] _bat;
        private readonly int _batBytes;
        private readonly int _bitmapBytes = BitmapBytes(BlockSize);
        private long _dataEnd;
        private bool _completed;

        public VhdImageWriter(string path, long virtualSize)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            if (virtualSize < 0 || virtualSize % SectorSize != 0 || virtualSize > MaxVirtualSize)
                throw new ArgumentOutOfRangeException(nameof(virtualSize), virtualSize, $"a VHD's size is a multiple of {SectorSize} bytes up to {MaxVirtualSize} (2040 GiB); restore larger disks as VHDX or qcow2");
            Path = path;
            VirtualSize = virtualSize;
            long blocks = (virtualSize + BlockSize - 1) / BlockSize;
            _bat = new uint[blocks];
            for (long i = 0; i < blocks; i++) _bat[i] = UnusedBatEntry;
            _batBytes = (int)((blocks * BatEntrySize + SectorSize - 1) / SectorSize * SectorSize);
            _dataEnd = BatOffset + _batBytes;
            // CreateNew: a restore never overwrites an existing file by accident.
            _file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1);
            try
            {
                SparseFile.MarkSparse(_file);
            }
            catch
            {
                _file.Dispose();
                throw;
            }

            _buffer = new SequentialClusterBuffer(ClusterSize, virtualSize, WriteClusters);
            _writeBehind = new WriteBehind(_file);
            _direct = DirectFile.TryOpenForWriting(path);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Vhd;
        public long VirtualSize { get; }

        public void Write(long offset, byte[] buffer, int index, int count)
        {
            if (_completed) throw new InvalidOperationException("The image is already complete.");
            _buffer.Write(offset, buffer, index, count);
        }

        private void WriteClusters(long firstCluster, int clusters, byte[] buffer, int index)
        {
            long offset = firstCluster * ClusterSize;
            long end = Math.Min(offset + (long)clusters * ClusterSize, VirtualSize);
            while (offset < end)
            {
                long block = offset / BlockSize;
                long inBlock = offset - block * BlockSize;
                int n = (int)Math.Min(BlockSize - inBlock, end - offset);
                long host = AllocateBlock(block) + _bitmapBytes + inBlock;
                DirectFile.WriteAt(_direct, _file, _writeBehind, host, buffer, index, n);
                offset += n;
                index += n;
            }
        }

        /// <summary>The file offset of a block (its bitmap), appending it at the end of the file the first time.</summary>
        private long AllocateBlock(long block)
        {
            if (_bat[block] != UnusedBatEntry) return (long)_bat[block] * SectorSize;
            long data = (_dataEnd + _bitmapBytes + DataAlignment - 1) / DataAlignment * DataAlignment;
            long start = data - _bitmapBytes;
            _bat[block] = (uint)(start / SectorSize);
            var bitmap = new byte[_bitmapBytes];
            for (int i = 0; i < bitmap.Length; i++) bitmap[i] = 0xff;
            StreamIO.WriteAt(_file, start, bitmap, 0, bitmap.Length);
            _dataEnd = data + BlockSize;
            return start;
        }

        public void Complete()
        {
            if (_completed) return;
            _buffer.Flush();

            var bat = new byte[_batBytes];
            for (int i = 0; i < bat.Length; i++) bat[i] = 0xff; // unused entries, and the padding to a whole sector
            for (int i = 0; i < _bat.Length; i++) BinaryPrimitives.WriteUInt32BigEndian(bat.AsSpan(i * BatEntrySize), _bat[i]);
            StreamIO.WriteAt(_file, BatOffset, bat, 0, bat.Length);

            var header = new VhdDynamicHeader { TableOffset = BatOffset, MaxTableEntries = _bat.Length, BlockSize = BlockSize };
            var headerBytes = new byte[DynamicHeaderSize];
            header.WriteTo(headerBytes);
            StreamIO.WriteAt(_file, HeaderOffset, headerBytes, 0, headerBytes.Length);

            var footer = new byte[FooterSize];
            NewFooter().WriteTo(footer, 0);
            StreamIO.WriteAt(_file, _dataEnd, footer, 0, footer.Length);
            _file.SetLength(_dataEnd + FooterSize);
            _file.Flush(flushToDisk: true);
            // The copy at offset 0 last: it is what makes the file a dynamic VHD.
            StreamIO.WriteAt(_file, 0, footer, 0, footer.Length);
            _file.Flush(flushToDisk: true);
            _completed = true;
        }

        private VhdFooter NewFooter()
        {
            long sectors = VirtualSize / SectorSize;
            var (cylinders, heads, perTrack) = VhdFooter.Geometry(sectors);
            if ((long)cylinders * heads * perTrack != sectors)
            {
                cylinders = 65535;
                heads = 16;
                perTrack = 255;
            }

            return new VhdFooter
            {
                DataOffset = HeaderOffset,
                TimeStamp = (uint)Math.Max(0, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - EpochUnixSeconds),
                CreatorApplication = Creator,
                CreatorVersion = 0x00010000,
                CreatorHostOs = CreatorHostOsWindows,
                OriginalSize = (ulong)VirtualSize,
                CurrentSize = (ulong)VirtualSize,
                Cylinders = cylinders,
                Heads = heads,
                SectorsPerTrack = perTrack,
                DiskType = DiskTypeDynamic,
                UniqueId = Guid.NewGuid(),
            };
        }

        /// <summary>Closes the file; an image not completed is left as an unusable file (it has no footer copy at offset 0).</summary>
        public void Dispose()
        {
            _buffer.Dispose();
            _direct?.Dispose();
            _file.Dispose();
        }
    }
}
