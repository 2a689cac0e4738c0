using System;
using System.Buffers;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>
    /// Gathers ascending writes of any alignment into whole clusters and hands each cluster that holds
    /// a non-zero byte to the writer, so that every writer gets sparse output and ordering checks for free.
    /// </summary>
    internal sealed class SequentialClusterBuffer : IDisposable
    {
        /// <summary>Receives (cluster index, buffer of a whole cluster, bytes of it inside the disk).</summary>
        public delegate void ClusterSink(long clusterIndex, byte[] cluster, int length);

        private readonly int _clusterSize;
        private readonly long _virtualSize;
        private readonly ClusterSink _sink;
        private byte[]? _cluster;
        private long _current = -1;
        private long _next;

        public SequentialClusterBuffer(int clusterSize, long virtualSize, ClusterSink sink)
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
            byte[] cluster = _cluster ?? throw new ObjectDisposedException(nameof(SequentialClusterBuffer));

            while (count > 0)
            {
                long clusterIndex = offset / _clusterSize;
                if (clusterIndex != _current)
                {
                    Flush();
                    _current = clusterIndex;
                    Array.Clear(cluster, 0, _clusterSize);
                }

                int within = (int)(offset - clusterIndex * _clusterSize);
                int n = Math.Min(count, _clusterSize - within);
                Buffer.BlockCopy(buffer, index, cluster, within, n);
                offset += n;
                index += n;
                count -= n;
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
                _sink(_current, cluster, length);
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
    }
}
