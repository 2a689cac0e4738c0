using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    internal enum BlobCompression : byte
    {
        None = 0,
        Zstd = 1,
    }

    /// <summary>Where a block's bytes live: a pack, an offset in it, and how they are stored.</summary>
    internal readonly struct BlobLocation
    {
        public BlobLocation(string packId, long offset, int storedLength, int rawLength, BlobCompression compression)
        {
            PackId = packId;
            Offset = offset;
            StoredLength = storedLength;
            RawLength = rawLength;
            Compression = compression;
        }

        public string PackId { get; }
        public long Offset { get; }
        public int StoredLength { get; }
        public int RawLength { get; }
        public BlobCompression Compression { get; }
    }

    internal readonly struct PackEntry
    {
        public PackEntry(BlockHash hash, long offset, int storedLength, int rawLength, BlobCompression compression)
        {
            Hash = hash;
            Offset = offset;
            StoredLength = storedLength;
            RawLength = rawLength;
            Compression = compression;
        }

        public BlockHash Hash { get; }
        public long Offset { get; }
        public int StoredLength { get; }
        public int RawLength { get; }
        public BlobCompression Compression { get; }
    }

    /// <summary>
    /// Layout of a pack file (docs/repository-format.md): a header, the blobs back to back, then a trailer
    /// that lists them, so a pack describes itself and the index can always be rebuilt from the packs. Packs written
    /// with <see cref="FlagChecksum"/> also hold a checksum of every byte before the trailer, so that no stored byte
    /// goes unchecked (a zstd frame has bits a decoder ignores: a block's hash alone does not cover them).
    /// </summary>
    internal static class PackFormat
    {
        public static readonly byte[] HeaderMagic = { (byte)'V', (byte)'M', (byte)'C', (byte)'K', (byte)'P', (byte)'A', (byte)'C', (byte)'K' };
        public static readonly byte[] TrailerMagic = { (byte)'V', (byte)'M', (byte)'C', (byte)'K', (byte)'T', (byte)'R', (byte)'L', (byte)'1' };
        public static readonly byte[] ChecksumMagic = { (byte)'V', (byte)'M', (byte)'C', (byte)'K', (byte)'S', (byte)'U', (byte)'M', (byte)'1' };
        public const int Version = 1;
        public const int HeaderSize = 16;              // magic(8) version(4) flags(4)
        public const int EntrySize = BlockHash.Size + 8 + 4 + 4 + 1; // hash, offset, stored, raw, compression
        public const int FooterSize = 32 + 4 + 8;      // sha256(entries) count magic
        /// <summary>
        /// Header flag: the blobs are followed by <see cref="ChecksumSize"/> bytes, the pack checksum and <see cref="ChecksumMagic"/>.
        /// The pack checksum is the SHA-256 of the header followed by the <see cref="StoredDigest"/> of each blob, in the
        /// order they lie: with the blobs filling the space between header and checksum, it covers every byte before it.
        /// </summary>
        public const uint FlagChecksum = 1;
        /// <summary>The flags this version knows; a pack with any other is damaged (the field was reserved, always 0, before).</summary>
        public const uint KnownFlags = FlagChecksum;
        public const int ChecksumSize = 32 + 8;        // sha256(header and blobs) magic
        public const int MaxEntries = 1 << 20;
        public const int MaxBlobSize = 64 << 20;

        /// <summary>The SHA-256 of a blob's stored bytes, as the pack checksum takes it.</summary>
        public static byte[] StoredDigest(byte[] stored, int length)
        {
            using var sha = SHA256.Create(); // a microsecond, against the blob's own hashing
            return sha.ComputeHash(stored, 0, length);
        }

        public static void WriteHeader(byte[] buffer, uint flags)
        {
            HeaderMagic.CopyTo(buffer, 0);
            BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(8), Version);
            BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(12), flags);
        }

        public static void WriteEntry(byte[] buffer, int index, PackEntry e)
        {
            e.Hash.WriteTo(buffer, index);
            var span = buffer.AsSpan(index + BlockHash.Size);
            BinaryPrimitives.WriteInt64LittleEndian(span, e.Offset);
            BinaryPrimitives.WriteInt32LittleEndian(span.Slice(8), e.StoredLength);
            BinaryPrimitives.WriteInt32LittleEndian(span.Slice(12), e.RawLength);
            span[16] = (byte)e.Compression;
        }

        /// <summary>Parses one entry and checks it against the space it may occupy.</summary>
        public static PackEntry ReadEntry(byte[] buffer, int index, long blobAreaEnd, string source)
        {
            var hash = BlockHash.FromBytes(buffer, index);
            var span = buffer.AsSpan(index + BlockHash.Size);
            long offset = BinaryPrimitives.ReadInt64LittleEndian(span);
            int stored = BinaryPrimitives.ReadInt32LittleEndian(span.Slice(8));
            int raw = BinaryPrimitives.ReadInt32LittleEndian(span.Slice(12));
            var compression = (BlobCompression)span[16];
            if (offset < HeaderSize || stored <= 0 || stored > MaxBlobSize || offset > blobAreaEnd - stored)
                throw new InvalidDataException($"{source}: blob entry points outside the pack (offset {offset}, length {stored}).");
            if (raw <= 0 || raw > MaxBlobSize)
                throw new InvalidDataException($"{source}: blob entry has an invalid size {raw}.");
            if (compression != BlobCompression.None && compression != BlobCompression.Zstd)
                throw new InvalidDataException($"{source}: blob entry has unknown compression {(byte)compression}.");
            // An encrypted repository's blobs carry a nonce and a tag (Aes256Gcm.Overhead) besides their bytes.
            if (compression == BlobCompression.None && raw != stored && raw + Encryption.Aes256Gcm.Overhead != stored)
                throw new InvalidDataException($"{source}: uncompressed blob of {stored} bytes claims {raw}.");
            return new PackEntry(hash, offset, stored, raw, compression);
        }

        /// <summary>
        /// Reads and checks a pack's header (<see cref="InvalidDataException"/> when damaged); returns its flags. Readers
        /// of blocks need nothing from it: only checking a pack (<see cref="PackChecker"/>) reads it.
        /// </summary>
        public static uint ReadHeader(IObjectReader pack, string source)
        {
            if (pack.Length < HeaderSize + FooterSize)
                throw new InvalidDataException($"{source}: too short to be a pack ({pack.Length} bytes).");
            var header = new byte[HeaderSize];
            pack.ReadExactly(0, header, HeaderSize, source);
            if (!header.AsSpan(0, 8).SequenceEqual(HeaderMagic))
                throw new InvalidDataException($"{source}: not a pack file (bad magic).");
            int version = BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8));
            if (version != Version)
                throw new InvalidDataException($"{source}: pack version {version} is not supported.");
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
            if ((flags & ~KnownFlags) != 0)
                throw new InvalidDataException($"{source}: pack header has unknown flags 0x{flags:x8}.");
            return flags;
        }

        /// <summary>
        /// Reads the trailer of a pack: the list of its blobs, in the order they were written. The header is not read:
        /// a damaged header takes nothing from the blobs, which the trailer alone locates.
        /// </summary>
        public static List<PackEntry> ReadTrailer(IObjectReader pack, string source) => ReadTrailer(pack, source, out _);

        /// <summary>As <see cref="ReadTrailer(IObjectReader, string)"/>; also gives where the entries start.</summary>
        public static List<PackEntry> ReadTrailer(IObjectReader pack, string source, out long entriesStart)
        {
            long length = pack.Length;
            if (length < HeaderSize + FooterSize)
                throw new InvalidDataException($"{source}: too short to be a pack ({length} bytes).");
            var footer = new byte[FooterSize];
            pack.ReadExactly(length - FooterSize, footer, FooterSize, source);
            if (!footer.AsSpan(36, 8).SequenceEqual(TrailerMagic))
                throw new InvalidDataException($"{source}: pack trailer is missing or damaged.");
            int count = BinaryPrimitives.ReadInt32LittleEndian(footer.AsSpan(32));
            if (count < 0 || count > MaxEntries || (long)count * EntrySize > length - HeaderSize - FooterSize)
                throw new InvalidDataException($"{source}: pack trailer claims {count} blobs.");
            var entries = new byte[count * EntrySize];
            entriesStart = length - FooterSize - entries.Length;
            pack.ReadExactly(entriesStart, entries, entries.Length, source);
            using (var sha = SHA256.Create())
            {
                var digest = sha.ComputeHash(entries);
                if (!digest.AsSpan().SequenceEqual(footer.AsSpan(0, 32)))
                    throw new InvalidDataException($"{source}: pack trailer checksum does not match.");
            }
            var list = new List<PackEntry>(count);
            for (int i = 0; i < count; i++) list.Add(ReadEntry(entries, i * EntrySize, entriesStart, source));
            return list;
        }

        /// <summary>
        /// A digest of a list of entries in offset order, to compare what an index says of a pack with what the pack
        /// says of itself without keeping both lists.
        /// </summary>
        public static byte[] Digest(IEnumerable<PackEntry> entries)
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[EntrySize];
            foreach (var e in entries.OrderBy(e => e.Offset).ThenBy(e => e.Hash))
            {
                WriteEntry(buffer, 0, e);
                sha.AppendData(buffer);
            }
            return sha.GetHashAndReset();
        }

        /// <summary>Reads the trailer of a pack file opened as a stream (tests, tools).</summary>
        public static List<PackEntry> ReadTrailer(Stream stream, string source) => ReadTrailer(new StreamReaderAt(stream), source);

        private sealed class StreamReaderAt : IObjectReader
        {
            private readonly Stream _stream;

            public StreamReaderAt(Stream stream)
            {
                _stream = stream;
                Length = stream.Length;
            }

            public long Length { get; }

            public int ReadAt(long offset, byte[] buffer, int index, int count)
            {
                _stream.Position = offset;
                int done = 0;
                while (done < count)
                {
                    int n = _stream.Read(buffer, index + done, count - done);
                    if (n <= 0) break;
                    done += n;
                }
                return done;
            }

            public void Dispose() { } // the stream is the caller's
        }
    }
}
