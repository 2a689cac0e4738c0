using System;
using System.IO;
using System.Runtime.InteropServices;

namespace VmCheckpoint.Core.Disks
{
    /// <summary>Positional reads and writes on streams, and the zero test that keeps outputs sparse.</summary>
    internal static class StreamIO
    {
        /// <summary>Reads until <paramref name="count"/> bytes or end of stream; returns how many were read.</summary>
        public static int ReadAtMost(Stream stream, byte[] buffer, int index, int count)
        {
            int total = 0;
            while (total < count)
            {
                int n = stream.Read(buffer, index + total, count - total);
                if (n == 0) break;
                total += n;
            }

            return total;
        }

        /// <summary>Reads at <paramref name="position"/>; bytes past the end of the stream read as zero.</summary>
        public static void ReadAtZeroPadded(Stream stream, long position, byte[] buffer, int index, int count)
        {
            int got = 0;
            if (position < stream.Length)
            {
                stream.Position = position;
                got = ReadAtMost(stream, buffer, index, count);
            }

            if (got < count)
            {
                Array.Clear(buffer, index + got, count - got);
            }
        }

        public static void WriteAt(Stream stream, long position, byte[] buffer, int index, int count)
        {
            stream.Position = position;
            stream.Write(buffer, index, count);
        }

        public static bool IsAllZero(byte[] buffer, int index, int count)
        {
            ReadOnlySpan<byte> span = new ReadOnlySpan<byte>(buffer, index, count);
            ReadOnlySpan<ulong> words = MemoryMarshal.Cast<byte, ulong>(span);
            foreach (ulong w in words)
            {
                if (w != 0) return false;
            }

            for (int i = words.Length * sizeof(ulong); i < span.Length; i++)
            {
                if (span[i] != 0) return false;
            }

            return true;
        }

        public static void CheckBuffer(byte[] buffer, int index, int count)
        {
            if (buffer == null) throw new ArgumentNullException(nameof(buffer));
            if (index < 0) throw new ArgumentOutOfRangeException(nameof(index));
            if (count < 0 || count > buffer.Length - index) throw new ArgumentOutOfRangeException(nameof(count));
        }

        public static void CheckRange(long offset, long length, long virtualSize)
        {
            if (offset < 0) throw new ArgumentOutOfRangeException(nameof(offset));
            if (length < 0 || length > virtualSize - offset)
                throw new ArgumentOutOfRangeException(nameof(length), $"[{offset}, +{length}) is past the virtual size {virtualSize}.");
        }
    }
}
