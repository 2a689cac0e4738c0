using System;
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>SHA-256 of a block's uncompressed content: the block's name in the repository.</summary>
    public readonly struct BlockHash : IEquatable<BlockHash>, IComparable<BlockHash>
    {
        public const int Size = 32;

        private readonly ulong _a, _b, _c, _d;

        private BlockHash(ulong a, ulong b, ulong c, ulong d)
        {
            _a = a; _b = b; _c = c; _d = d;
        }

        public static BlockHash FromBytes(byte[] bytes, int index)
        {
            if (bytes.Length - index < Size) throw new ArgumentException("A block hash is 32 bytes.", nameof(bytes));
            return new BlockHash(
                BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(index)),
                BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(index + 8)),
                BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(index + 16)),
                BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(index + 24)));
        }

        public static BlockHash Compute(HashAlgorithm sha256, byte[] data, int index, int count)
            => FromBytes(sha256.ComputeHash(data, index, count), 0);

        public static BlockHash Parse(string hex)
        {
            if (hex is null || hex.Length != Size * 2) throw new FormatException("A block hash is 64 hexadecimal digits.");
            var bytes = new byte[Size];
            for (int i = 0; i < Size; i++)
            {
                bytes[i] = (byte)((HexValue(hex[2 * i]) << 4) | HexValue(hex[2 * i + 1]));
            }
            return FromBytes(bytes, 0);
        }

        public void WriteTo(byte[] destination, int index)
        {
            var span = destination.AsSpan(index, Size);
            BinaryPrimitives.WriteUInt64BigEndian(span, _a);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(8), _b);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(16), _c);
            BinaryPrimitives.WriteUInt64BigEndian(span.Slice(24), _d);
        }

        public bool Equals(BlockHash other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;
        public override bool Equals(object? obj) => obj is BlockHash h && Equals(h);
        public override int GetHashCode() => unchecked((int)_a ^ (int)(_a >> 32));
        public static bool operator ==(BlockHash x, BlockHash y) => x.Equals(y);
        public static bool operator !=(BlockHash x, BlockHash y) => !x.Equals(y);

        public int CompareTo(BlockHash other)
        {
            int c = _a.CompareTo(other._a);
            if (c != 0) return c;
            c = _b.CompareTo(other._b);
            if (c != 0) return c;
            c = _c.CompareTo(other._c);
            return c != 0 ? c : _d.CompareTo(other._d);
        }

        public override string ToString()
        {
            var bytes = new byte[Size];
            WriteTo(bytes, 0);
            return Hex.Encode(bytes);
        }

        private static int HexValue(char c)
        {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            throw new FormatException($"'{c}' is not a hexadecimal digit.");
        }
    }

    internal static class Hex
    {
        public static string Encode(byte[] bytes) => Encode(bytes, 0, bytes.Length);

        public static string Encode(byte[] bytes, int index, int count)
        {
            const string digits = "0123456789abcdef";
            var chars = new char[count * 2];
            for (int i = 0; i < count; i++)
            {
                chars[2 * i] = digits[bytes[index + i] >> 4];
                chars[2 * i + 1] = digits[bytes[index + i] & 0xF];
            }
            return new string(chars);
        }

        public static string Random(int bytes)
        {
            var b = new byte[bytes];
            using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(b);
            return Encode(b);
        }
    }
}
