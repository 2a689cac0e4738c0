using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Cuts one disk into repository blocks and stores those the repository lacks: the calling thread reads
    /// blocks in disk order (sequential I/O), workers hash, compress and store them. Memory is bounded by the
    /// queue, whatever the disk size.
    /// </summary>
    internal sealed class DiskUploader
    {
        private readonly BlockStore _store;
        private readonly int _blockSize;
        private readonly int _workers;
        private readonly int _compressionLevel;

        public DiskUploader(BlockStore store, int blockSize, int workers = 0, int compressionLevel = 1)
        {
            _store = store;
            _blockSize = blockSize;
            _workers = workers > 0 ? workers : Math.Max(1, Math.Min(4, Environment.ProcessorCount));
            _compressionLevel = compressionLevel;
        }

        /// <summary>Reads the disk and returns its complete block table.</summary>
        public BlockTable Upload(DiskSource source, BlockTable? parent, CheckpointStatistics stats, Action<long, long>? progress, CancellationToken cancellationToken)
        {
            var image = source.Image;
            long virtualSize = image.VirtualSize;
            long blockCount = (virtualSize + _blockSize - 1) / _blockSize;
            var result = new List<KeyValuePair<long, BlockHash>>();
            var toRead = BlocksToRead(source, parent, blockCount);

            long holes = 0;
            // Blocks outside the changed ranges are the parent's, unchanged (a synthetic full).
            if (source.ChangedExtents != null && parent != null)
            {
                var readSet = new HashSet<long>(toRead);
                for (int i = 0; i < parent.Count; i++)
                {
                    if (parent.IndexAt(i) < blockCount && !readSet.Contains(parent.IndexAt(i)))
                        result.Add(new KeyValuePair<long, BlockHash>(parent.IndexAt(i), parent.HashAt(i)));
                }
            }
            else if (parent != null)
            {
                // A parent block outside today's data extents (trimmed, now a hole) is not read, but it changed to zero.
                var readSet = new HashSet<long>(toRead);
                for (int i = 0; i < parent.Count; i++)
                {
                    long index = parent.IndexAt(i);
                    if (index < blockCount && !readSet.Contains(index)) holes += Math.Min(_blockSize, virtualSize - index * _blockSize);
                }
            }

            long total = toRead.Count;
            var found = new ConcurrentBag<KeyValuePair<long, BlockHash>>();
            long read = 0, changed = holes, fresh = 0, stored = 0, done = 0;
            int queueDepth = _workers * 2;
            var free = new BlockingCollection<byte[]>();
            for (int i = 0; i < queueDepth + _workers + 1; i++) free.Add(new byte[_blockSize]);
            using var queue = new BlockingCollection<(long Index, byte[] Buffer, int Length)>(queueDepth);
            using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var workers = Enumerable.Range(0, _workers).Select(_ => Task.Factory.StartNew(() =>
            {
                using var sha = SHA256.Create();
                using var compressor = new ZstdSharp.Compressor(_compressionLevel);
                var compressed = new byte[ZstdSharp.Compressor.GetCompressBound(_blockSize)];
                try
                {
                foreach (var item in queue.GetConsumingEnumerable(failed.Token))
                {
                    try
                    {
                        if (IsZero(item.Buffer, item.Length))
                        {
                            if (parent?.Find(item.Index) != null) Interlocked.Add(ref changed, item.Length);
                            continue;
                        }
                        var hash = BlockHash.Compute(sha, item.Buffer, 0, item.Length);
                        found.Add(new KeyValuePair<long, BlockHash>(item.Index, hash));
                        if (parent?.Find(item.Index) != hash) Interlocked.Add(ref changed, item.Length);
                        if (!_store.TryClaim(hash)) continue;
                        try
                        {
                            int n = compressor.Wrap(new ReadOnlySpan<byte>(item.Buffer, 0, item.Length), compressed);
                            long added = n < item.Length
                                ? _store.Add(hash, compressed, n, item.Length, BlobCompression.Zstd)
                                : _store.Add(hash, item.Buffer, item.Length, item.Length, BlobCompression.None);
                            Interlocked.Add(ref fresh, item.Length);
                            Interlocked.Add(ref stored, added);
                        }
                        catch
                        {
                            _store.Release(hash);
                            throw;
                        }
                    }
                    finally
                    {
                        free.Add(item.Buffer);
                        progress?.Invoke(Interlocked.Increment(ref done), total);
                    }
                }
                }
                catch (Exception e) when (!(e is OperationCanceledException))
                {
                    failed.Cancel(); // the reader must not wait for workers that are gone
                    throw;
                }
            }, failed.Token, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToArray();

            try
            {
                foreach (long index in toRead)
                {
                    failed.Token.ThrowIfCancellationRequested();
                    long offset = index * _blockSize;
                    int length = (int)Math.Min(_blockSize, virtualSize - offset);
                    var buffer = free.Take(failed.Token);
                    image.Read(offset, buffer, 0, length);
                    read += length;
                    queue.Add((index, buffer, length), failed.Token);
                }
                queue.CompleteAdding();
            }
            catch (Exception readFailure)
            {
                failed.Cancel();
                queue.CompleteAdding();
                var fault = WaitQuietly(workers);
                // A worker's failure (a full disk, an unreachable share) is the cause; the reader only saw the cancellation.
                if (readFailure is OperationCanceledException && fault != null) throw fault;
                throw;
            }
            var workerFault = WaitQuietly(workers);
            if (workerFault != null) throw workerFault;

            stats.ReadBytes += read;
            stats.ChangedBytes += changed;
            stats.NewBytes += fresh;
            stats.StoredBytes += stored;
            result.AddRange(found);
            return BlockTable.FromUnsorted(result);
        }

        private static Exception? WaitQuietly(Task[] workers)
        {
            try
            {
                Task.WaitAll(workers);
            }
            catch (AggregateException)
            {
            }
            return workers.Where(w => w.IsFaulted).Select(w => w.Exception!.InnerException!)
                .FirstOrDefault(e => !(e is OperationCanceledException));
        }

        /// <summary>Block indexes to read, ascending: those touched by the changed (or else the data) extents.</summary>
        private List<long> BlocksToRead(DiskSource source, BlockTable? parent, long blockCount)
        {
            // Changed ranges only describe a disk relative to its parent; without one, every data block is read.
            var extents = source.ChangedExtents != null && parent != null
                ? source.ChangedExtents
                : source.Image.GetDataExtents(0, source.Image.VirtualSize);
            var list = new List<long>();
            long last = -1;
            foreach (var e in extents.OrderBy(x => x.Offset))
            {
                if (e.Length <= 0) continue;
                long first = Math.Max(e.Offset / _blockSize, last + 1);
                long end = Math.Min((e.End + _blockSize - 1) / _blockSize, blockCount);
                for (long b = first; b < end; b++) list.Add(b);
                if (end - 1 > last) last = end - 1;
            }
            return list;
        }

        internal static unsafe bool IsZero(byte[] buffer, int length)
        {
            fixed (byte* p = buffer)
            {
                int i = 0;
                ulong* q = (ulong*)p;
                for (; i + 32 <= length; i += 32, q += 4)
                {
                    if ((q[0] | q[1] | q[2] | q[3]) != 0) return false;
                }
                for (; i < length; i++)
                {
                    if (p[i] != 0) return false;
                }
                return true;
            }
        }
    }
}
