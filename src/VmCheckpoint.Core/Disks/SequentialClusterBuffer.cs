using System;
using System.Buffers;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// Gathers ascending writes of any alignment into whole clusters and hands each run of consecutive clusters that
    /// hold a non-zero byte to the writer, so that every writer gets sparse output and ordering checks for free.
    /// Whole clusters of a write are handed over straight from the caller's buffer, several at a time (one copy and
    /// one system call for a run instead of one per cluster); only the pieces of clusters that a write covers in part,
    /// and the disk's last cluster when it is short, are copied into a cluster of its own first.
    /// </summary>
    internal sealed class SequentialClusterBuffer : IDisposable
    {
        /// <summary>
        /// Receives <paramref name="clusters"/> consecutive clusters from <paramref name="firstCluster"/> on, every one of
        /// them holding data: <paramref name="buffer"/> holds clusters × cluster size bytes from <paramref name="index"/>,
        /// zero past the disk's end. Valid only during the call.
        /// </summary>
        public delegate void ClusterRunSink(long firstCluster, int clusters, byte[] buffer, int index);

        private readonly int _clusterSize;
        private readonly long _virtualSize;
        private readonly ClusterRunSink _sink;
        private byte[]? _cluster;
        private long _current = -1;
        private long _next;

        public SequentialClusterBuffer(int clusterSize, long virtualSize, ClusterRunSink sink)
        {
            _clusterSize = clusterSize;
            _virtualSize = virtualSize;
            _sink = sink;
            _cluster = ArrayPool<byte>.Shared.Rent(clusterSize);
        }

        public void Write(long offset, byte[] buffer, int index, int count)
        {
            StreamIO.CheckBuffer(buffer, index, count);
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            if (count > _virtualSize - offset)
                throw new ArgumentOutOfRangeException(nameof(count), $"Write at {offset} of {count} bytes is past the virtual size {_virtualSize}.");
            if (offset < _next)
                throw new InvalidOperationException($"Writes must ascend: {offset} is before the end of the previous write ({_next}).");
            if (_cluster is null) throw new ObjectDisposedException(nameof(SequentialClusterBuffer));

            while (count > 0)
            {
                long clusterIndex = offset / _clusterSize;
                int within = (int)(offset - clusterIndex * _clusterSize);
                int whole = within == 0 && clusterIndex != _current ? WholeClusters(clusterIndex, count) : 0;
                if (whole > 0)
                {
                    Flush();
                    HandOver(clusterIndex, whole, buffer, index);
                    int n = whole * _clusterSize;
                    offset += n;
                    index += n;
                    count -= n;
                    continue;
                }

                if (clusterIndex != _current)
                {
                    Flush();
                    _current = clusterIndex;
                    Array.Clear(_cluster, 0, _clusterSize);
                }

                int part = Math.Min(count, _clusterSize - within);
                Buffer.BlockCopy(buffer, index, _cluster, within, part);
                offset += part;
                index += part;
                count -= part;
            }

            _next = Math.Max(_next, offset);
        }

        /// <summary>Hands the cluster being gathered to the sink unless it is all zero.</summary>
        public void Flush()
        {
            byte[]? cluster = _cluster;
            if (_current < 0 || cluster == null) return;
            int length = (int)Math.Min(_clusterSize, _virtualSize - _current * _clusterSize);
            if (!StreamIO.IsAllZero(cluster, 0, length))
            {
                _sink(_current, 1, cluster, 0);
            }

            _current = -1;
        }

        public void Dispose()
        {
            if (_cluster != null)
            {
                ArrayPool<byte>.Shared.Return(_cluster);
                _cluster = null;
            }
        }

        /// <summary>How many whole clusters from <paramref name="clusterIndex"/> on a write of <paramref name="count"/> bytes covers (a short last cluster of the disk is not whole).</summary>
        private int WholeClusters(long clusterIndex, int count)
        {
            long untilEnd = (_virtualSize - clusterIndex * _clusterSize) / _clusterSize;
            return (int)Math.Min(count / _clusterSize, untilEnd);
        }

        /// <summary>Passes the non-zero runs among <paramref name="clusters"/> whole clusters of the caller's buffer.</summary>
        private void HandOver(long firstCluster, int clusters, byte[] buffer, int index)
        {
            int runStart = -1;
            for (int c = 0; c <= clusters; c++)
            {
                bool data = c < clusters && !StreamIO.IsAllZero(buffer, index + c * _clusterSize, _clusterSize);
                if (data && runStart < 0) runStart = c;
                if (!data && runStart >= 0)
                {
                    _sink(firstCluster + runStart, c - runStart, buffer, index + runStart * _clusterSize);
                    runStart = -1;
                }
            }
        }
    }
}
