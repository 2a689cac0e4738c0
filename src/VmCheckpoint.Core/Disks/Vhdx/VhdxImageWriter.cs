using System;
using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using static VmCheckpoint.Core.Disks.Vhdx.VhdxLayout;

namespace VmCheckpoint.Core.Disks.Vhdx
{
    /// <summary>
    /// Writes a new dynamic or differencing VHDX. Payload blocks are appended as the first data in them
    /// arrives; all-zero sectors are never written, so the file stays sparse. The BAT, sector bitmaps, metadata,
    /// region tables and headers are written by <see cref="Complete"/>; until then the file is not a VHDX.
    /// </summary>
    /// <remarks>
    /// Layout: header section (1 MiB), log (1 MiB, empty), metadata (1 MiB), BAT, then blocks in write order.
    /// In a differencing disk every written sector is marked present, zeros included, since it hides the parent's.
    /// </remarks>
    internal sealed class VhdxImageWriter : IDiskImageWriter
    {
        public const int DefaultBlockSize = 32 * MiB;
        private const long LogOffset = 1 * MiB;
        private const int LogLength = 1 * MiB;
        private const long MetadataOffset = 2 * MiB;
        private const long BatOffset = 3 * MiB;
        private const string Creator = "VmCheckpoint";

        private readonly FileStream _stream;
        private readonly VhdxMetadata _metadata;
        private readonly VhdxImage? _parent;
        private readonly Guid _parentDataWriteGuid;
        private readonly long _chunkRatio;
        private readonly int _sectorSize;
        private readonly long _sectorsPerBlock;
        private readonly long _batEntries;
        private readonly long _batLength;
        private readonly long[] _blockOffsets;
        private readonly Dictionary<long, byte[]> _bitmaps = new Dictionary<long, byte[]>();
        private readonly byte[] _pending;
        private long _pendingSector = -1;
        private long _fileEnd;
        private long _writtenUpTo;
        private bool _completed;

        private VhdxImageWriter(string path, VhdxMetadata metadata, VhdxImage? parent)
        {
            _metadata = metadata;
            _parent = parent;
            _sectorSize = metadata.LogicalSectorSize;
            _sectorsPerBlock = metadata.BlockSize / _sectorSize;
            _chunkRatio = ChunkRatio(_sectorSize, metadata.BlockSize);
            _batEntries = BatEntryCount(metadata.VirtualSize, metadata.BlockSize, _sectorSize, metadata.HasParent);
            _batLength = RoundUp(_batEntries * BatEntrySize, MiB);
            _blockOffsets = new long[DataBlockCount(metadata.VirtualSize, metadata.BlockSize)];
            _pending = new byte[_sectorSize];
            _fileEnd = BatOffset + _batLength;
            Path = path;
            if (parent != null)
            {
                _parentDataWriteGuid = parent.Header.DataWriteGuid;
                metadata.ParentLocator = BuildParentLocator(path, parent.Path, _parentDataWriteGuid);
            }
            // CreateNew: a restore never overwrites an existing file by accident.
            _stream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Vhdx;
        public long VirtualSize => _metadata.VirtualSize;

        /// <summary>Creates an empty dynamic VHDX of <paramref name="virtualSize"/> bytes (a multiple of the logical sector size).</summary>
        public static VhdxImageWriter CreateDynamic(string path, long virtualSize, int blockSize = DefaultBlockSize, int logicalSectorSize = 512)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            CheckGeometry(virtualSize, blockSize, logicalSectorSize);
            var metadata = new VhdxMetadata
            {
                BlockSize = blockSize,
                VirtualSize = virtualSize,
                LogicalSectorSize = logicalSectorSize,
                PhysicalSectorSize = 4096,
                Page83Id = Guid.NewGuid(),
            };
            return new VhdxImageWriter(path, metadata, null);
        }

        /// <summary>
        /// Creates an empty differencing VHDX whose parent is the VHDX at <paramref name="parentPath"/>: it reads as
        /// the parent until written. The parent is held open (read-only) until this writer is disposed.
        /// </summary>
        public static VhdxImageWriter CreateDifferencing(string path, string parentPath, int blockSize = DefaultBlockSize)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            if (parentPath == null) throw new ArgumentNullException(nameof(parentPath));
            VhdxImage parent = VhdxImage.Open(parentPath);
            try
            {
                CheckGeometry(parent.VirtualSize, blockSize, parent.Metadata.LogicalSectorSize);
                var metadata = new VhdxMetadata
                {
                    BlockSize = blockSize,
                    HasParent = true,
                    VirtualSize = parent.VirtualSize,
                    LogicalSectorSize = parent.Metadata.LogicalSectorSize,
                    PhysicalSectorSize = parent.Metadata.PhysicalSectorSize,
                    Page83Id = Guid.NewGuid(),
                };
                return new VhdxImageWriter(path, metadata, parent);
            }
            catch
            {
                parent.Dispose();
                throw;
            }
        }

        private static void CheckGeometry(long virtualSize, int blockSize, int logicalSectorSize)
        {
            if (logicalSectorSize != 512 && logicalSectorSize != 4096)
                throw new ArgumentOutOfRangeException(nameof(logicalSectorSize), "logical sector size must be 512 or 4096");
            if (blockSize < MinBlockSize || blockSize > MaxBlockSize || (blockSize & (blockSize - 1)) != 0)
                throw new ArgumentOutOfRangeException(nameof(blockSize), "block size must be a power of two from 1 MiB to 256 MiB");
            if (virtualSize <= 0 || virtualSize > MaxVirtualSize || virtualSize % logicalSectorSize != 0)
                throw new ArgumentOutOfRangeException(nameof(virtualSize), $"virtual size must be a multiple of {logicalSectorSize} bytes up to 64 TiB");
        }

        private static Dictionary<string, string> BuildParentLocator(string childPath, string parentPath, Guid linkage)
        {
            string childFull = System.IO.Path.GetFullPath(childPath);
            string parentFull = System.IO.Path.GetFullPath(parentPath);
            var pairs = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                // Lower case: libvhdi (a second reader we test against) compares the text case-sensitively.
                ["parent_linkage"] = linkage.ToString("B"),
            };
            string? relative = RelativeWindowsPath(System.IO.Path.GetDirectoryName(childFull) ?? "", parentFull);
            if (relative != null) pairs["relative_path"] = relative;
            // On Windows this is the real absolute path; elsewhere it is the host's path, which readers on the
            // same host (this one) can use and Hyper-V ignores in favour of relative_path.
            pairs["absolute_win32_path"] = parentFull;
            return pairs;
        }

        /// <summary>The path of <paramref name="file"/> relative to <paramref name="folder"/>, with backslashes; null across roots.</summary>
        internal static string? RelativeWindowsPath(string folder, string file)
        {
            bool windows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
            StringComparison comparison = windows ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
            char[] separators = { System.IO.Path.DirectorySeparatorChar, System.IO.Path.AltDirectorySeparatorChar };
            string[] from = folder.Split(separators, StringSplitOptions.RemoveEmptyEntries);
            string[] to = file.Split(separators, StringSplitOptions.RemoveEmptyEntries);
            if (!string.Equals(System.IO.Path.GetPathRoot(folder), System.IO.Path.GetPathRoot(file), comparison)) return null;
            int common = 0;
            while (common < from.Length && common < to.Length - 1 && string.Equals(from[common], to[common], comparison)) common++;
            var result = new StringBuilder(common == from.Length ? ".\\" : "");
            for (int i = common; i < from.Length; i++) result.Append("..\\");
            result.Append(string.Join("\\", to, common, to.Length - common));
            return result.ToString();
        }

        public void Write(long offset, byte[] buffer, int index, int count)
        {
            if (_completed) throw new InvalidOperationException("the image is complete");
            if (buffer == null) throw new ArgumentNullException(nameof(buffer));
            if (index < 0 || count < 0 || index > buffer.Length - count) throw new ArgumentOutOfRangeException(nameof(count));
            if (offset < _writtenUpTo) throw new ArgumentOutOfRangeException(nameof(offset), $"writes must ascend: {offset} is before {_writtenUpTo}");
            if (offset > VirtualSize - count) throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, +{count}) is past the {VirtualSize}-byte disk");
            _writtenUpTo = offset + count;

            while (count > 0)
            {
                long sector = offset / _sectorSize;
                int inSector = (int)(offset - sector * _sectorSize);
                if (_pendingSector >= 0 && _pendingSector != sector) FlushPending();
                if (inSector != 0 || count < _sectorSize)
                {
                    // A partial sector: gather it, filling what is not written from the parent (or zeros).
                    if (_pendingSector != sector)
                    {
                        if (_parent != null) _parent.Read(sector * _sectorSize, _pending, 0, _sectorSize);
                        else Array.Clear(_pending, 0, _sectorSize);
                        _pendingSector = sector;
                    }
                    int n = Math.Min(_sectorSize - inSector, count);
                    Buffer.BlockCopy(buffer, index, _pending, inSector, n);
                    if (inSector + n == _sectorSize) FlushPending();
                    offset += n;
                    index += n;
                    count -= n;
                }
                else
                {
                    int whole = count / _sectorSize;
                    WriteSectors(sector, buffer, index, whole);
                    int n = whole * _sectorSize;
                    offset += n;
                    index += n;
                    count -= n;
                }
            }
        }

        private void FlushPending()
        {
            long sector = _pendingSector;
            _pendingSector = -1;
            WriteSectors(sector, _pending, 0, 1);
        }

        private void WriteSectors(long sector, byte[] buffer, int index, int count)
        {
            while (count > 0)
            {
                long block = sector / _sectorsPerBlock;
                long inBlock = sector - block * _sectorsPerBlock;
                int n = (int)Math.Min(_sectorsPerBlock - inBlock, count);
                if (_parent != null)
                {
                    AllocateBlock(block);
                    MarkPresent(block, inBlock, n);
                }
                WriteNonZeroRuns(block, inBlock, buffer, index, n);
                sector += n;
                index += n * _sectorSize;
                count -= n;
            }
        }

        private void WriteNonZeroRuns(long block, long inBlock, byte[] buffer, int index, int sectors)
        {
            int i = 0;
            while (i < sectors)
            {
                while (i < sectors && IsZero(buffer, index + i * _sectorSize, _sectorSize)) i++;
                int start = i;
                while (i < sectors && !IsZero(buffer, index + i * _sectorSize, _sectorSize)) i++;
                if (i == start) break;
                long host = AllocateBlock(block) + (inBlock + start) * _sectorSize;
                _stream.Position = host;
                _stream.Write(buffer, index + start * _sectorSize, (i - start) * _sectorSize);
            }
        }

        private static bool IsZero(byte[] buffer, int index, int count)
        {
            ReadOnlySpan<byte> span = buffer.AsSpan(index, count);
            ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(span);
            foreach (ulong word in words)
                if (word != 0) return false;
            for (int i = words.Length * 8; i < span.Length; i++)
                if (span[i] != 0) return false;
            return true;
        }

        private long AllocateBlock(long block)
        {
            if (_blockOffsets[block] == 0)
            {
                _blockOffsets[block] = _fileEnd;
                _fileEnd += _metadata.BlockSize;
            }
            return _blockOffsets[block];
        }

        private void MarkPresent(long block, long firstSector, int count)
        {
            if (!_bitmaps.TryGetValue(block, out byte[]? bitmap))
            {
                bitmap = new byte[_sectorsPerBlock / 8];
                _bitmaps.Add(block, bitmap);
            }
            for (long s = firstSector, end = firstSector + count; s < end; s++)
                bitmap[s >> 3] |= (byte)(1 << (int)(s & 7));
        }

        private bool IsFullyPresent(long block)
        {
            if (_parent == null) return true;
            byte[] bitmap = _bitmaps[block];
            long sectors = Math.Min(_sectorsPerBlock, (VirtualSize - block * _metadata.BlockSize) / _sectorSize);
            for (long s = 0; s < sectors; s++)
                if ((bitmap[s >> 3] & (1 << (int)(s & 7))) == 0) return false;
            return true;
        }

        public void Complete()
        {
            if (_completed) throw new InvalidOperationException("the image is already complete");
            if (_pendingSector >= 0) FlushPending();

            // Sector bitmap blocks, for the chunks of a differencing disk that hold partially present blocks.
            var payloadStates = new byte[_blockOffsets.Length];
            var bitmapOffsets = new Dictionary<long, long>();
            for (long b = 0; b < _blockOffsets.Length; b++)
            {
                if (_blockOffsets[b] == 0) continue;
                bool full = IsFullyPresent(b);
                payloadStates[b] = (byte)(full ? PayloadFullyPresent : PayloadPartiallyPresent);
                long chunk = b / _chunkRatio;
                if (!full && !bitmapOffsets.ContainsKey(chunk))
                {
                    bitmapOffsets.Add(chunk, _fileEnd);
                    _fileEnd += SectorBitmapBlockSize;
                }
            }
            foreach (var pair in _bitmaps)
            {
                if (!bitmapOffsets.TryGetValue(pair.Key / _chunkRatio, out long bitmapHost)) continue;
                _stream.Position = bitmapHost + (pair.Key % _chunkRatio) * pair.Value.Length;
                _stream.Write(pair.Value, 0, pair.Value.Length);
            }

            WriteBat(payloadStates, bitmapOffsets);

            var metadata = new byte[MiB];
            _metadata.WriteTo(metadata);
            WriteAt(MetadataOffset, metadata, MiB);

            var regionTable = new byte[RegionTableSize];
            VhdxRegionTable.WriteTo(regionTable, new VhdxRegion(BatOffset, _batLength), new VhdxRegion(MetadataOffset, MiB));
            WriteAt(RegionTable1Offset, regionTable, RegionTableSize);
            WriteAt(RegionTable2Offset, regionTable, RegionTableSize);

            var identifier = new byte[8 + CreatorLength];
            BinaryPrimitives.WriteUInt64LittleEndian(identifier, FileSignature);
            Encoding.Unicode.GetBytes(Creator, 0, Creator.Length, identifier, CreatorOffset);
            WriteAt(FileIdentifierOffset, identifier, identifier.Length);

            // Headers last: the file becomes a VHDX only once everything they point at is in place.
            var header = new VhdxHeader
            {
                FileWriteGuid = Guid.NewGuid(),
                DataWriteGuid = Guid.NewGuid(),
                LogGuid = Guid.Empty,
                LogLength = LogLength,
                LogOffset = LogOffset,
            };
            var headerBytes = new byte[HeaderSize];
            header.SequenceNumber = 1;
            header.WriteTo(headerBytes);
            WriteAt(Header1Offset, headerBytes, HeaderSize);
            header.SequenceNumber = 2;
            header.WriteTo(headerBytes);
            WriteAt(Header2Offset, headerBytes, HeaderSize);

            _stream.SetLength(_fileEnd);
            _stream.Flush(true);
            _completed = true;
        }

        private void WriteBat(byte[] payloadStates, Dictionary<long, long> bitmapOffsets)
        {
            byte[] chunk = ArrayPool<byte>.Shared.Rent(MiB);
            try
            {
                const int perChunk = MiB / BatEntrySize;
                for (long first = 0; first < _batEntries; first += perChunk)
                {
                    int n = (int)Math.Min(perChunk, _batEntries - first);
                    for (int i = 0; i < n; i++)
                        BinaryPrimitives.WriteUInt64LittleEndian(chunk.AsSpan(i * BatEntrySize), BatEntry(first + i, payloadStates, bitmapOffsets));
                    _stream.Position = BatOffset + first * BatEntrySize;
                    _stream.Write(chunk, 0, n * BatEntrySize);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(chunk);
            }
        }

        private ulong BatEntry(long index, byte[] payloadStates, Dictionary<long, long> bitmapOffsets)
        {
            long group = index / (_chunkRatio + 1);
            long inGroup = index - group * (_chunkRatio + 1);
            if (inGroup == _chunkRatio)
                return bitmapOffsets.TryGetValue(group, out long bitmapHost) ? (ulong)(bitmapHost / MiB) << BatFileOffsetShift | BitmapPresent : 0;
            long block = group * _chunkRatio + inGroup;
            if (block >= _blockOffsets.Length || _blockOffsets[block] == 0) return PayloadNotPresent;
            return (ulong)(_blockOffsets[block] / MiB) << BatFileOffsetShift | payloadStates[block];
        }

        private void WriteAt(long offset, byte[] data, int count)
        {
            _stream.Position = offset;
            _stream.Write(data, 0, count);
        }

        /// <summary>Closes the file; an image not completed is left as an unusable file (its headers are never written).</summary>
        public void Dispose()
        {
            _stream.Dispose();
            _parent?.Dispose();
        }
    }
}
