using System;
using System.IO;
using System.IO.Compression;

namespace VmCheckpoint.Core.Disks.Qcow2
{
    /// <summary>Inflates one compressed cluster (raw deflate or zstd) into exactly one cluster of bytes.</summary>
    internal static class Qcow2Compression
    {
        /// <summary>
        /// Decompresses <paramref name="input"/>[0..inputLength) into <paramref name="output"/>[0..clusterSize).
        /// The input may carry padding up to its last 512-byte sector, which is ignored as qemu does.
        /// </summary>
        public static void Decompress(string path, byte type, byte[] input, int inputLength, byte[] output, int clusterSize, long guestOffset)
        {
            try
            {
                using var source = new MemoryStream(input, 0, inputLength, writable: false);
                using Stream decoder = type == Qcow2Format.CompressionZstd
                    ? new ZstdSharp.DecompressionStream(source)
                    : new DeflateStream(source, CompressionMode.Decompress);
                int got = StreamIO.ReadAtMost(decoder, output, 0, clusterSize);
                if (got != clusterSize)
                    throw new CorruptImageException(path, $"compressed cluster at guest offset {guestOffset} inflates to {got} bytes, not the cluster size {clusterSize}");
                if (type == Qcow2Format.CompressionZlib && decoder.ReadByte() >= 0)
                    throw new CorruptImageException(path, $"compressed cluster at guest offset {guestOffset} inflates to more than the cluster size {clusterSize}");
            }
            catch (CorruptImageException)
            {
                throw;
            }
            catch (Exception e) when (e is InvalidDataException || e is ZstdSharp.ZstdException || e is IOException || e is ArgumentException || e is InvalidOperationException)
            {
                throw new CorruptImageException(path, $"compressed cluster at guest offset {guestOffset} does not decompress: {e.Message}");
            }
        }
    }
}
