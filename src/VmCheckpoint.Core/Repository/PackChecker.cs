using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>What checking one pack found.</summary>
    internal sealed class PackCheckResult
    {
        public PackCheckResult(string id, string name)
        {
            Id = id;
            Name = name;
        }

        public string Id { get; }
        public string Name { get; }
        public long Length { get; set; }
        /// <summary>The blobs as the pack's trailer lists them; null when the trailer is damaged.</summary>
        public List<PackEntry>? Entries { get; set; }
        /// <summary>Damage to the pack's own structure: header, trailer, layout, checksum.</summary>
        public List<string> Problems { get; } = new List<string>();
        /// <summary>
        /// Every blob read, and what is wrong with it (null: nothing). A blob the trailer does not list is one an index
        /// claims: wrong there, it is the index that is wrong, not the pack (unless the trailer is damaged).
        /// </summary>
        public List<(PackEntry Entry, string? Problem, bool Listed)> Blobs { get; } = new List<(PackEntry, string?, bool)>();
        public long BytesRead { get; set; }
        public bool Damaged => Problems.Count > 0 || DamagedBlobs.Any();

        private IEnumerable<(PackEntry Entry, string? Problem, bool Listed)> DamagedBlobs => Blobs.Where(b => b.Problem != null && (b.Listed || Entries is null));

        /// <summary>Everything wrong, in one line.</summary>
        public string Describe()
        {
            var bad = DamagedBlobs.ToList();
            var parts = Problems.Select(p => p.TrimEnd('.')).ToList();
            if (bad.Count > 0) parts.Add($"{bad.Count} blob(s) damaged, the first at offset {bad[0].Entry.Offset}: {bad[0].Problem!.TrimEnd('.')}");
            return string.Join("; ", parts);
        }
    }

    /// <summary>
    /// Checks packs byte by byte, reading each from its start to its end (never back and forth): the header, the trailer
    /// and its checksum, that the blobs fill the space between them exactly, each blob against its hash, and the pack's
    /// checksum of every byte before the trailer where it has one. Together that covers every byte of a pack. One checker
    /// per thread: it owns a codec, a hash and its buffers.
    /// </summary>
    internal sealed class PackChecker : IDisposable
    {
        /// <summary>Reads go ahead in windows of this size: few calls on a share, one pass over the pack.</summary>
        private const int WindowSize = 4 << 20;

        private readonly RepositoryLayout _layout;
        private readonly BlobDecoder _decoder;
        private readonly byte[] _raw = new byte[RepositoryConfig.MaxBlockSize];
        private byte[] _stored = new byte[0];
        private byte[] _window = new byte[0]; // one for every pack this checker reads

        public PackChecker(RepositoryLayout layout)
        {
            _layout = layout;
            _decoder = new BlobDecoder(layout);
        }

        /// <summary>
        /// Checks one pack. <paramref name="readAll"/> reads every byte: each blob the trailer lists, the pack's checksum,
        /// and the entries of <paramref name="known"/> (what an index says of the pack) where they differ from the
        /// trailer. Otherwise only the structure is checked and the blobs of <paramref name="toRead"/> read.
        /// A pack that does not exist throws <see cref="ObjectNotFoundException"/>; one that cannot be read, <see cref="IOException"/>.
        /// </summary>
        public PackCheckResult Check(string id, bool readAll, IReadOnlyCollection<PackEntry>? known, IReadOnlyCollection<PackEntry>? toRead, CancellationToken cancellationToken)
        {
            string name = _layout.PackName(id);
            string source = _layout.Backend.Locate(name);
            var result = new PackCheckResult(id, name);
            using var reader = _layout.Backend.OpenRead(name);
            result.Length = reader.Length;

            uint? flags = null;
            try
            {
                flags = PackFormat.ReadHeader(reader, source);
            }
            catch (InvalidDataException e)
            {
                result.Problems.Add("header: " + Strip(e.Message, source));
            }
            long entriesStart = 0;
            try
            {
                result.Entries = PackFormat.ReadTrailer(reader, source, out entriesStart);
            }
            catch (InvalidDataException e)
            {
                result.Problems.Add("trailer: " + Strip(e.Message, source));
            }

            var checksum = new byte[PackFormat.ChecksumSize];
            bool hasChecksum = false;
            bool tiled = false;
            if (result.Entries != null)
            {
                // A header too damaged to give its flags: the checksum's own magic says whether there is one.
                hasChecksum = flags.HasValue
                    ? (flags.Value & PackFormat.FlagChecksum) != 0
                    : entriesStart - PackFormat.ChecksumSize >= PackFormat.HeaderSize && reader.ReadAt(entriesStart - PackFormat.ChecksumSize, checksum, 0, checksum.Length) == checksum.Length
                      && checksum.AsSpan(32).SequenceEqual(PackFormat.ChecksumMagic);
                long blobsEnd = entriesStart - (hasChecksum ? PackFormat.ChecksumSize : 0);
                tiled = CheckLayout(result, blobsEnd);
                if (hasChecksum && blobsEnd >= PackFormat.HeaderSize)
                {
                    reader.ReadExactly(blobsEnd, checksum, checksum.Length, source);
                    if (!checksum.AsSpan(32).SequenceEqual(PackFormat.ChecksumMagic))
                        result.Problems.Add("the pack checksum's marker is damaged");
                }
            }

            // The blobs to read, in the order they lie in the pack.
            var blobs = new List<PackEntry>();
            if (readAll)
            {
                if (result.Entries != null) blobs.AddRange(result.Entries);
                if (known != null) blobs.AddRange(known);
            }
            else if (toRead != null)
            {
                blobs.AddRange(toRead);
            }
            blobs = blobs.Distinct(EntryComparer.Instance).OrderBy(e => e.Offset).ToList();

            // The pack checksum, made as it is read (the header, then each blob's digest): only where the blobs fill the space.
            bool hashing = readAll && hasChecksum && tiled;
            using var whole = hashing ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : null;
            if ((blobs.Count > 0 || whole != null) && _window.Length < WindowSize) _window = new byte[WindowSize];
            var window = new ForwardReader(reader, source, _window);
            if (whole != null)
            {
                var header = new byte[PackFormat.HeaderSize];
                window.Read(0, header, header.Length);
                whole.AppendData(header);
            }
            var fromTrailer = new HashSet<PackEntry>(result.Entries ?? Enumerable.Empty<PackEntry>(), EntryComparer.Instance);
            long hashedTo = PackFormat.HeaderSize;
            foreach (var e in blobs)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (_stored.Length < e.StoredLength) _stored = new byte[e.StoredLength];
                if (e.Offset + e.StoredLength > reader.Length)
                {
                    result.Blobs.Add((e, $"lies past the end of the pack (offset {e.Offset}, {e.StoredLength} bytes)", fromTrailer.Contains(e)));
                    continue;
                }
                window.Read(e.Offset, _stored, e.StoredLength);
                if (whole != null && e.Offset == hashedTo && fromTrailer.Contains(e))
                {
                    whole.AppendData(PackFormat.StoredDigest(_stored, e.StoredLength));
                    hashedTo += e.StoredLength;
                }
                result.Blobs.Add((e, CheckBlob(e), fromTrailer.Contains(e)));
            }
            if (whole != null)
            {
                if (hashedTo != entriesStart - PackFormat.ChecksumSize)
                    result.Problems.Add("the pack checksum could not be computed");
                else if (!whole.GetHashAndReset().AsSpan().SequenceEqual(checksum.AsSpan(0, 32)))
                    result.Problems.Add("the pack's bytes do not match its checksum");
            }
            result.BytesRead = window.BytesRead;
            return result;
        }

        /// <summary>The blobs must fill the space between header and trailer exactly: a byte nobody lists is a byte nobody checks.</summary>
        private static bool CheckLayout(PackCheckResult result, long blobsEnd)
        {
            long at = PackFormat.HeaderSize;
            foreach (var e in result.Entries!.OrderBy(e => e.Offset))
            {
                if (e.Offset != at)
                {
                    result.Problems.Add(e.Offset > at
                        ? $"bytes {at} to {e.Offset} belong to no blob"
                        : $"the blob at offset {e.Offset} overlaps the one before it");
                    return false;
                }
                at = e.Offset + e.StoredLength;
            }
            if (at != blobsEnd)
            {
                result.Problems.Add(at < blobsEnd ? $"bytes {at} to {blobsEnd} belong to no blob" : $"the last blob runs into the trailer (to {at}, trailer at {blobsEnd})");
                return false;
            }
            return true;
        }

        /// <summary>Decompresses a blob read into the stored buffer and checks it against its hash; returns what is wrong, or null.</summary>
        private string? CheckBlob(PackEntry e)
        {
            if (e.RawLength > _raw.Length) return $"claims {e.RawLength} bytes, more than a block holds";
            return _decoder.TryDecode(e.Hash, _stored, e.StoredLength, e.RawLength, e.Compression, _raw, out _) is { } problem ? $"block {e.Hash} {problem}" : null;
        }

        private static string Strip(string message, string source) =>
            message.StartsWith(source + ": ", StringComparison.Ordinal) ? message.Substring(source.Length + 2) : message;

        public void Dispose()
        {
            _decoder.Dispose();
        }

        /// <summary>Entries equal in every field are one blob (the trailer's and an index's copy of it).</summary>
        private sealed class EntryComparer : IEqualityComparer<PackEntry>
        {
            public static readonly EntryComparer Instance = new EntryComparer();

            public bool Equals(PackEntry x, PackEntry y) =>
                x.Hash == y.Hash && x.Offset == y.Offset && x.StoredLength == y.StoredLength && x.RawLength == y.RawLength && x.Compression == y.Compression;

            public int GetHashCode(PackEntry e) => e.Hash.GetHashCode() ^ e.Offset.GetHashCode();
        }

        /// <summary>
        /// Reads a pack front to back in large windows, so that a pack of small blobs costs a few large reads; a range
        /// behind the window or larger than it is read on its own.
        /// </summary>
        private sealed class ForwardReader
        {
            private readonly IObjectReader _reader;
            private readonly string _source;
            private readonly byte[] _window;
            private long _start;
            private int _length;

            public ForwardReader(IObjectReader reader, string source, byte[] window)
            {
                _reader = reader;
                _source = source;
                _window = window;
            }

            public long BytesRead { get; private set; }

            public void Read(long offset, byte[] destination, int count)
            {
                if (offset >= _start && offset + count <= _start + _length)
                {
                    Buffer.BlockCopy(_window, (int)(offset - _start), destination, 0, count);
                    return;
                }
                if (count >= WindowSize)
                {
                    _reader.ReadExactly(offset, destination, count, _source);
                    BytesRead += count;
                    return;
                }
                int want = (int)Math.Min(WindowSize, _reader.Length - offset);
                _start = offset;
                _length = _reader.ReadAt(offset, _window, 0, want);
                BytesRead += _length;
                if (_length < count) throw new InvalidDataException($"{_source}: file ends early.");
                Buffer.BlockCopy(_window, 0, destination, 0, count);
            }
        }
    }
}
