using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// The blocks of one disk: for each block index that holds data, the hash of its content. Blocks not
    /// listed are zero. Sorted by index; memory grows with the data, not with the virtual size.
    /// </summary>
    public sealed class BlockTable
    {
        private const int EntrySize = 8 + BlockHash.Size;
        private readonly long[] _indexes;
        private readonly BlockHash[] _hashes;

        internal BlockTable(long[] indexes, BlockHash[] hashes)
        {
            _indexes = indexes;
            _hashes = hashes;
        }

        public static BlockTable Empty { get; } = new BlockTable(new long[0], new BlockHash[0]);

        public int Count => _indexes.Length;
        public long IndexAt(int i) => _indexes[i];
        public BlockHash HashAt(int i) => _hashes[i];

        /// <summary>The hash of block <paramref name="index"/>, or null when that block is zero.</summary>
        public BlockHash? Find(long index)
        {
            int i = Array.BinarySearch(_indexes, index);
            return i >= 0 ? _hashes[i] : (BlockHash?)null;
        }

        public static BlockTable FromUnsorted(List<KeyValuePair<long, BlockHash>> entries)
        {
            entries.Sort((x, y) => x.Key.CompareTo(y.Key));
            var indexes = new long[entries.Count];
            var hashes = new BlockHash[entries.Count];
            for (int i = 0; i < entries.Count; i++)
            {
                if (i > 0 && entries[i].Key == entries[i - 1].Key) throw new ArgumentException($"Block {entries[i].Key} listed twice.");
                indexes[i] = entries[i].Key;
                hashes[i] = entries[i].Value;
            }
            return new BlockTable(indexes, hashes);
        }

        internal string Encode()
        {
            var raw = new byte[Count * EntrySize];
            for (int i = 0; i < Count; i++)
            {
                BinaryPrimitives.WriteInt64LittleEndian(raw.AsSpan(i * EntrySize), _indexes[i]);
                _hashes[i].WriteTo(raw, i * EntrySize + 8);
            }
            using (var compressor = new ZstdSharp.Compressor(3))
                return Convert.ToBase64String(compressor.Wrap(raw).ToArray());
        }

        internal static BlockTable Decode(string encoded, int count, long blockCount, string source)
        {
            if (count < 0 || count > blockCount)
                throw new InvalidDataException($"{source}: block count {count} does not fit the disk.");
            byte[] raw;
            try
            {
                var compressed = Convert.FromBase64String(encoded);
                // The count is only a claim: check it against the frame's own size before allocating for it.
                if (ZstdSharp.Decompressor.GetDecompressedSize(compressed) != (ulong)count * EntrySize)
                    throw new InvalidDataException($"{source}: block table does not hold the {count} entries it claims.");
                using (var decompressor = new ZstdSharp.Decompressor())
                {
                    raw = new byte[(long)count * EntrySize];
                    int n = decompressor.Unwrap(compressed, raw);
                    if (n != raw.Length) throw new InvalidDataException($"{source}: block table holds {n / EntrySize} entries, expected {count}.");
                }
            }
            catch (Exception e) when (e is FormatException || e is ZstdSharp.ZstdException || e is ArgumentException)
            {
                throw new InvalidDataException($"{source}: block table is damaged ({e.Message}).");
            }
            var indexes = new long[count];
            var hashes = new BlockHash[count];
            for (int i = 0; i < count; i++)
            {
                long index = BinaryPrimitives.ReadInt64LittleEndian(raw.AsSpan(i * EntrySize));
                if (index < 0 || index >= blockCount || (i > 0 && index <= indexes[i - 1]))
                    throw new InvalidDataException($"{source}: block table entry {i} has index {index}, out of order or outside the disk.");
                indexes[i] = index;
                hashes[i] = BlockHash.FromBytes(raw, i * EntrySize + 8);
            }
            return new BlockTable(indexes, hashes);
        }
    }
}
