using System;
using System.IO;
using System.Security.Cryptography;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// Turns a blob's stored bytes back into its block: decrypted (an encrypted repository), decompressed, and checked
    /// against its id. What restores read (<see cref="BlockReader"/>) and what verification checks (<see cref="PackChecker"/>)
    /// is one code path. One per thread: it keeps its buffers and its hasher.
    /// </summary>
    internal sealed class BlobDecoder : IDisposable
    {
        private readonly RepositoryLayout _layout;
        private readonly BlockCodec _codec = new BlockCodec();
        private readonly HashAlgorithm _hasher;
        private byte[] _opened = new byte[0]; // an encrypted blob's plain (compressed) bytes

        public BlobDecoder(RepositoryLayout layout)
        {
            _layout = layout;
            _hasher = layout.NewBlockHasher();
        }

        /// <summary>
        /// Decodes <paramref name="storedLength"/> bytes of <paramref name="stored"/> into <paramref name="destination"/>;
        /// returns null, or what is wrong ("does not match its hash", ...) to follow "block &lt;id&gt;" in a message.
        /// </summary>
        public string? TryDecode(BlockHash hash, byte[] stored, int storedLength, int rawLength, BlobCompression compression, byte[] destination, out int length)
        {
            length = 0;
            if (_layout.Key is { } key)
            {
                if (_opened.Length < storedLength) _opened = new byte[storedLength];
                try
                {
                    storedLength = key.OpenBlob(hash, stored, storedLength, _opened);
                }
                catch (CryptographicException)
                {
                    return "does not decrypt with the repository's key (damaged or altered)";
                }
                stored = _opened;
            }
            if (compression == BlobCompression.Zstd)
            {
                try
                {
                    length = _codec.Decompress(stored, storedLength, destination, rawLength);
                }
                catch (InvalidDataException e)
                {
                    return "does not decompress: " + e.Message;
                }
            }
            else
            {
                Buffer.BlockCopy(stored, 0, destination, 0, storedLength);
                length = storedLength;
            }
            if (length != rawLength || BlockHash.Compute(_hasher, destination, 0, length) != hash)
                return "does not match its hash";
            return null;
        }

        public void Dispose()
        {
            _codec.Dispose();
            _hasher.Dispose();
        }
    }
}
