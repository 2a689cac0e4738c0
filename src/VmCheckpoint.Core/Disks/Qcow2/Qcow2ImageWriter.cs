using System;
using System.Buffers.Binary;
using System.IO;
using static VmCheckpoint.Core.Disks.Qcow2.Qcow2Format;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>
    /// Writes a qcow2 v3 image (64 KiB clusters, 16-bit refcounts, no compression) from ascending writes.
    /// Data clusters and L2 tables are appended as they come, holding one L2 table in memory; the L1 table,
    /// refcount structures and finally the header are written by <see cref="Complete"/>, which flushes the file to
    /// disk. Data runs go past the page cache where the file system allows (<see cref="DirectFile"/>); what goes
    /// through it starts its writeback while it is written (<see cref="WriteBehind"/>), so that the flush is short.
    /// </summary>
    internal sealed class Qcow2ImageWriter : IDiskImageWriter
    {
        internal const int ClusterBits = 16;
        internal const int ClusterSize = 1 << ClusterBits;
        internal const int L2Bits = ClusterBits - 3;
        internal const int L2EntryCount = 1 << L2Bits;
        internal const int RefcountOrder = 4;
        internal const int RefcountBytes = 1 << (RefcountOrder - 3);
        internal const int RefcountsPerBlock = ClusterSize / RefcountBytes;
        internal const int RefcountTableEntrySize = 8;
        private const int SectorSize = 512;

        private readonly FileStream _file;
        private readonly SequentialClusterBuffer _buffer;
        private readonly WriteBehind _writeBehind;
        private readonly DirectFile? _direct;
        private readonly ulong[] _l1;
        private readonly ulong[] _l2 = new ulong[L2EntryCount];
        private readonly byte[] _tableBytes = new byte[ClusterSize];
        private long _currentL2 = -1;
        private long _nextCluster = 1; // cluster 0 is the header, written last
        private bool _completed;

        public Qcow2ImageWriter(string path, long virtualSize)
        {
            if (virtualSize < 0 || virtualSize > MaxVirtualSize)
                throw new ArgumentOutOfRangeException(nameof(virtualSize), virtualSize, "qcow2 virtual size must be between 0 and 2^56.");
            if (virtualSize % SectorSize != 0)
                throw new ArgumentException($"qcow2 virtual size must be a multiple of {SectorSize} bytes, not {virtualSize}.", nameof(virtualSize));
            Path = path;
            VirtualSize = virtualSize;
            long l1Size = (virtualSize + ((long)ClusterSize << L2Bits) - 1) >> (ClusterBits + L2Bits);
            if (l1Size * L1EntrySize > MaxL1TableBytes)
                throw new ArgumentOutOfRangeException(nameof(virtualSize), virtualSize, "qcow2 virtual size needs an L1 table larger than qemu accepts (32 MiB).");
            _l1 = new ulong[l1Size];
            _file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1);
            _buffer = new SequentialClusterBuffer(ClusterSize, virtualSize, WriteDataClusters);
            _writeBehind = new WriteBehind(_file);
            _direct = DirectFile.TryOpenForWriting(path);
        }

        public string Path { get; }
        public DiskFormat Format => DiskFormat.Qcow2;
        public long VirtualSize { get; }

        public void Write(long offset, byte[] buffer, int index, int count)
        {
            if (_completed) throw new InvalidOperationException("The image is already complete.");
            _buffer.Write(offset, buffer, index, count);
        }

        public void Complete()
        {
            if (_completed) return;
            _buffer.Flush();
            WriteCurrentL2();

            long l1Clusters = ClustersFor((long)_l1.Length * L1EntrySize);
            long l1Offset = _nextCluster * ClusterSize;
            long beforeRefcounts = _nextCluster + l1Clusters;
            (long tableClusters, long blockCount) = RefcountLayout(beforeRefcounts);
            long refcountTableOffset = beforeRefcounts * ClusterSize;
            long firstBlock = beforeRefcounts + tableClusters;
            long totalClusters = firstBlock + blockCount;

            WriteL1(l1Offset, l1Clusters);
            WriteRefcountTable(refcountTableOffset, tableClusters, firstBlock, blockCount);
            WriteRefcountBlocks(firstBlock, blockCount, totalClusters);
            _file.SetLength(totalClusters * ClusterSize);
            WriteHeader(l1Offset, refcountTableOffset, tableClusters);
            _file.Flush(flushToDisk: true);
            _completed = true;
        }

        public void Dispose()
        {
            _buffer.Dispose();
            _direct?.Dispose();
            _file.Dispose();
        }

        /// <summary>Bytes written past the page cache (tests).</summary>
        internal long DirectBytes => _direct?.DirectBytes ?? 0;

        /// <summary>
        /// Refcount clusters needed when <paramref name="otherClusters"/> clusters exist besides them: the blocks
        /// and table count themselves, so iterate until the counts stop changing (they only grow, so this ends).
        /// </summary>
        internal static (long TableClusters, long Blocks) RefcountLayout(long otherClusters)
        {
            long blocks = 0, table = 0;
            while (true)
            {
                long total = otherClusters + table + blocks;
                long newBlocks = (total + RefcountsPerBlock - 1) / RefcountsPerBlock;
                long newTable = ClustersFor(newBlocks * RefcountTableEntrySize);
                if (newBlocks == blocks && newTable == table) return (table, blocks);
                blocks = newBlocks;
                table = newTable;
            }
        }

        private static long ClustersFor(long bytes) => (bytes + ClusterSize - 1) / ClusterSize;

        /// <summary>
        /// Appends a run of data clusters, each L2 table's share of it with one write: the run's host clusters are
        /// consecutive, since an L2 table is only appended when the run moves on to the next table.
        /// </summary>
        private void WriteDataClusters(long firstCluster, int clusters, byte[] buffer, int index)
        {
            while (clusters > 0)
            {
                long table = firstCluster >> L2Bits;
                if (table != _currentL2)
                {
                    WriteCurrentL2();
                    _currentL2 = table;
                    Array.Clear(_l2, 0, _l2.Length);
                }

                int n = (int)Math.Min(clusters, ((table + 1) << L2Bits) - firstCluster);
                long host = _nextCluster * ClusterSize;
                _nextCluster += n;
                // Whole clusters (zero past the disk's end: the buffer says so) keep the file cluster aligned.
                DirectFile.WriteAt(_direct, _file, _writeBehind, host, buffer, index, n * ClusterSize);
                for (int i = 0; i < n; i++)
                {
                    _l2[(firstCluster + i) & (L2EntryCount - 1)] = (ulong)(host + (long)i * ClusterSize) | FlagCopied;
                }

                firstCluster += n;
                clusters -= n;
                index += n * ClusterSize;
            }
        }

        private void WriteCurrentL2()
        {
            if (_currentL2 < 0) return;
            long host = AllocateCluster();
            for (int i = 0; i < _l2.Length; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(_tableBytes.AsSpan(i * L2EntrySize), _l2[i]);
            }

            StreamIO.WriteAt(_file, host, _tableBytes, 0, ClusterSize);
            _writeBehind.Written(host + ClusterSize);
            _l1[_currentL2] = (ulong)host | FlagCopied;
            _currentL2 = -1;
        }

        private long AllocateCluster() => _nextCluster++ * ClusterSize;

        private void WriteL1(long offset, long clusters)
        {
            var bytes = new byte[clusters * ClusterSize];
            for (int i = 0; i < _l1.Length; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * L1EntrySize), _l1[i]);
            }

            StreamIO.WriteAt(_file, offset, bytes, 0, bytes.Length);
        }

        private void WriteRefcountTable(long offset, long tableClusters, long firstBlock, long blockCount)
        {
            // One cluster at a time so that a huge disk does not need one huge buffer.
            long entry = 0;
            for (long c = 0; c < tableClusters; c++)
            {
                Array.Clear(_tableBytes, 0, ClusterSize);
                for (int i = 0; i < ClusterSize / RefcountTableEntrySize && entry < blockCount; i++, entry++)
                {
                    BinaryPrimitives.WriteUInt64BigEndian(_tableBytes.AsSpan(i * RefcountTableEntrySize), (ulong)((firstBlock + entry) * ClusterSize));
                }

                StreamIO.WriteAt(_file, offset + c * ClusterSize, _tableBytes, 0, ClusterSize);
            }
        }

        private void WriteRefcountBlocks(long firstBlock, long blockCount, long totalClusters)
        {
            // Every cluster of the file is used exactly once: refcount 1 for clusters [0, totalClusters).
            for (long b = 0; b < blockCount; b++)
            {
                Array.Clear(_tableBytes, 0, ClusterSize);
                long first = b * RefcountsPerBlock;
                long count = Math.Min(RefcountsPerBlock, totalClusters - first);
                for (int i = 0; i < count; i++)
                {
                    BinaryPrimitives.WriteUInt16BigEndian(_tableBytes.AsSpan(i * RefcountBytes), 1);
                }

                StreamIO.WriteAt(_file, (firstBlock + b) * ClusterSize, _tableBytes, 0, ClusterSize);
            }
        }

        private void WriteHeader(long l1Offset, long refcountTableOffset, long refcountTableClusters)
        {
            Array.Clear(_tableBytes, 0, ClusterSize);
            Span<byte> h = _tableBytes;
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(MagicOffset), Magic);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(VersionOffset), 3);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(ClusterBitsOffset), ClusterBits);
            BinaryPrimitives.WriteUInt64BigEndian(h.Slice(SizeOffset), (ulong)VirtualSize);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(L1SizeOffset), (uint)_l1.Length);
            BinaryPrimitives.WriteUInt64BigEndian(h.Slice(L1TableOffsetOffset), (ulong)l1Offset);
            BinaryPrimitives.WriteUInt64BigEndian(h.Slice(RefcountTableOffsetOffset), (ulong)refcountTableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(RefcountTableClustersOffset), (uint)refcountTableClusters);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(RefcountOrderOffset), RefcountOrder);
            BinaryPrimitives.WriteUInt32BigEndian(h.Slice(HeaderLengthOffset), V3HeaderLengthWithCompressionType);
            h[CompressionTypeOffset] = CompressionZlib;
            // The end-of-extensions marker (8 zero bytes) follows at V3HeaderLengthWithCompressionType.
            StreamIO.WriteAt(_file, 0, _tableBytes, 0, ClusterSize);
        }
    }
}
