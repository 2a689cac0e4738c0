using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using VmCheckpoint.Core.Disks;
using VmCheckpoint.Core.Repository;

namespace VmCheckpoint.Core.Jobs
{
    /// <summary>
    /// Cuts one disk into repository blocks and stores those the repository lacks: a few threads take turns
    /// reading the next block in disk order (sequential I/O) and each hashes, compresses and stores the block it
    /// read. Memory is one block buffer per thread, whatever the disk size.
    /// </summary>
    internal sealed class DiskUploader
    {
        private readonly BlockStore _store;
        private readonly int _blockSize;
        private readonly int _workers;
        private readonly int _compressionLevel;

        public DiskUploader(BlockStore store, int blockSize, int workers = 0, int compressionLevel = 0)
        {
            _store = store;
            _blockSize = blockSize;
            _workers = workers > 0 ? workers : Math.Max(1, Math.Min(4, Environment.ProcessorCount));
            _compressionLevel = compressionLevel > 0 ? compressionLevel : BlockCodec.DefaultLevel;
        }

        /// <summary>Reads the disk and returns its complete block table.</summary>
        /// <param name="useChanges">Whether the source's changed ranges are relative to <paramref name="parent"/>; if not, every data block is read.</param>
        public BlockTable Upload(DiskSource source, BlockTable? parent, CheckpointStatistics stats, Action<long, long>? progress, CancellationToken cancellationToken, bool useChanges = true)
        {
            var image = source.Image;
            long virtualSize = image.VirtualSize;
            long blockCount = (virtualSize + _blockSize - 1) / _blockSize;
            var result = new List<KeyValuePair<long, BlockHash>>();
            var changes = useChanges && parent != null ? source.ChangedExtents : null;
            var toRead = changes is null ? BlocksToRead(source.Image, null, blockCount) : BlocksToRead(source.Image, changes, parent!, blockCount);

            long holes = 0;
            // Blocks outside the changed ranges are the parent's, unchanged (a synthetic full).
            if (changes != null && parent != null)
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
            // Every thread reads the next block in disk order (under one lock: the image reader is not thread-safe,
            // and the disk sees one sequential stream), then hashes and compresses it on its own. No hand-off
            // queue: on few cores a queue's spinning waits cost more than they overlap. One thread more than the
            // workers keeps the disk busy while the others compute.
            int threads = _workers + 1;
            var readGate = new object();
            int next = 0;
            using var failed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            void Work()
            {
                var buffer = new byte[_blockSize];
                using var sha = _store.NewBlockHasher();
                using var codec = new BlockCodec(_compressionLevel);
                byte[]? compressed = null;
                while (true)
                {
                    long index;
                    int length;
                    lock (readGate)
                    {
                        failed.Token.ThrowIfCancellationRequested();
                        if (next >= toRead.Count) return;
                        index = toRead[next++];
                        long offset = index * _blockSize;
                        length = (int)Math.Min(_blockSize, virtualSize - offset);
                        image.Read(offset, buffer, 0, length);
                        read += length;
                    }
                    try
                    {
                        if (IsZero(buffer, length))
                        {
                            if (parent?.Find(index) != null) Interlocked.Add(ref changed, length);
                            continue;
                        }
                        var hash = BlockHash.Compute(sha, buffer, 0, length);
                        found.Add(new KeyValuePair<long, BlockHash>(index, hash));
                        if (parent?.Find(index) != hash) Interlocked.Add(ref changed, length);
                        if (!_store.TryClaim(hash)) continue;
                        try
                        {
                            compressed ??= new byte[BlockCodec.CompressBound(_blockSize)];
                            int n = codec.Compress(buffer, length, compressed);
                            long added = n < length
                                ? _store.Add(hash, compressed, n, length, BlobCompression.Zstd)
                                : _store.Add(hash, buffer, length, length, BlobCompression.None);
                            Interlocked.Add(ref fresh, length);
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
                        progress?.Invoke(Interlocked.Increment(ref done), total);
                    }
                }
            }
            WorkerThreads.Run(threads, failed, Work);
            cancellationToken.ThrowIfCancellationRequested();

            stats.ReadBytes += read;
            stats.ChangedBytes += changed;
            stats.NewBytes += fresh;
            stats.StoredBytes += stored;
            result.AddRange(found);
            return BlockTable.FromUnsorted(result);
        }

        /// <summary>Block indexes to read, ascending: those touched by the changed (or else the data) extents.</summary>
        private List<long> BlocksToRead(IDiskImage image, IReadOnlyList<DiskExtent>? changes, long blockCount)
        {
            // Changed ranges only describe a disk relative to its parent; without one, every data block is read.
            var extents = changes ?? image.GetDataExtents(0, image.VirtualSize);
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

        /// <summary>
        /// Blocks to read when the changed ranges are known: those the ranges touch that hold data now or held data in
        /// the parent (a write of zeros, a discard), and every block of the parent that is a hole now whatever the
        /// ranges say (a disk shrunk and grown back loses data that no change tracking records). Walking the data and
        /// the parent's blocks, not the ranges, keeps this to the size of the data however large the ranges claim to be.
        /// </summary>
        private List<long> BlocksToRead(IDiskImage image, IReadOnlyList<DiskExtent> changes, BlockTable parent, long blockCount)
        {
            var sortedChanges = changes.Where(c => c.Length > 0).OrderBy(c => c.Offset).ToList();
            var list = new List<long>();
            using var data = DataBlocks(image, blockCount).GetEnumerator();
            bool haveData = data.MoveNext();
            int p = 0, c = 0;
            while (haveData || p < parent.Count)
            {
                long nextData = haveData ? data.Current : long.MaxValue;
                long nextParent = p < parent.Count ? parent.IndexAt(p) : long.MaxValue;
                if (nextParent >= blockCount) { p = parent.Count; if (!haveData) break; nextParent = long.MaxValue; }
                long b = Math.Min(nextData, nextParent);
                bool isData = nextData == b, inParent = nextParent == b;
                if (isData) haveData = data.MoveNext();
                if (inParent) p++;
                long start = b * _blockSize, end = start + _blockSize;
                while (c < sortedChanges.Count && sortedChanges[c].End <= start) c++;
                bool marked = c < sortedChanges.Count && sortedChanges[c].Offset < end;
                if (marked || (inParent && !isData)) list.Add(b);
            }
            return list;
        }

        /// <summary>The indexes of the blocks that hold data, ascending, each once.</summary>
        private IEnumerable<long> DataBlocks(IDiskImage image, long blockCount)
        {
            long last = -1;
            // Sorted here as well: the readers promise order, and a range out of order must not be skipped unread.
            foreach (var e in image.GetDataExtents(0, image.VirtualSize).OrderBy(x => x.Offset))
            {
                if (e.Length <= 0) continue;
                long first = Math.Max(e.Offset / _blockSize, last + 1);
                long end = Math.Min((e.End + _blockSize - 1) / _blockSize, blockCount);
                for (long b = first; b < end; b++) yield return b;
                if (end - 1 > last) last = end - 1;
            }
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
