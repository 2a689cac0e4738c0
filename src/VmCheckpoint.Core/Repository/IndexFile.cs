using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.Security.Cryptography;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// An index file lists the blobs of some packs so that opening a repository reads a few index files
    /// instead of every pack's trailer. It only ever duplicates what the packs say about themselves.
    /// </summary>
    internal static class IndexFile
    {
        private static readonly byte[] Magic = { (byte)'V', (byte)'M', (byte)'C', (byte)'K', (byte)'I', (byte)'D', (byte)'X', (byte)'1' };
        private const int PackIdBytes = 16;

        public static byte[] Serialize(IReadOnlyDictionary<string, IReadOnlyList<PackEntry>> packs)
        {
            long size = Magic.Length + 4;
            foreach (var p in packs) size += PackIdBytes + 4 + (long)p.Value.Count * PackFormat.EntrySize;
            size += 32;
            var buffer = new byte[size];
            Magic.CopyTo(buffer, 0);
            BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(8), packs.Count);
            int pos = 12;
            foreach (var p in packs)
            {
                WritePackId(p.Key, buffer, pos);
                pos += PackIdBytes;
                BinaryPrimitives.WriteInt32LittleEndian(buffer.AsSpan(pos), p.Value.Count);
                pos += 4;
                foreach (var e in p.Value)
                {
                    PackFormat.WriteEntry(buffer, pos, e);
                    pos += PackFormat.EntrySize;
                }
            }
            using (var sha = SHA256.Create()) sha.ComputeHash(buffer, 0, pos).CopyTo(buffer, pos);
            return buffer;
        }

        public static Dictionary<string, List<PackEntry>> Parse(byte[] buffer, string source)
        {
            if (buffer.Length < Magic.Length + 4 + 32 || !buffer.AsSpan(0, 8).SequenceEqual(Magic))
                throw new InvalidDataException($"{source}: not an index file.");
            int bodyLength = buffer.Length - 32;
            using (var sha = SHA256.Create())
            {
                if (!sha.ComputeHash(buffer, 0, bodyLength).AsSpan().SequenceEqual(buffer.AsSpan(bodyLength)))
                    throw new InvalidDataException($"{source}: index checksum does not match.");
            }
            int packCount = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(8));
            if (packCount < 0 || packCount > bodyLength / (PackIdBytes + 4))
                throw new InvalidDataException($"{source}: index claims {packCount} packs.");
            var result = new Dictionary<string, List<PackEntry>>(packCount, StringComparer.Ordinal);
            int pos = 12;
            for (int i = 0; i < packCount; i++)
            {
                if (pos + PackIdBytes + 4 > bodyLength) throw new InvalidDataException($"{source}: index ends early.");
                string id = Hex.Encode(buffer, pos, PackIdBytes);
                pos += PackIdBytes;
                int count = BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(pos));
                pos += 4;
                if (count < 0 || (long)count * PackFormat.EntrySize > bodyLength - pos)
                    throw new InvalidDataException($"{source}: index claims {count} blobs for pack {id}.");
                var list = new List<PackEntry>(count);
                for (int j = 0; j < count; j++)
                {
                    list.Add(PackFormat.ReadEntry(buffer, pos, long.MaxValue, source));
                    pos += PackFormat.EntrySize;
                }
                result[id] = list;
            }
            return result;
        }

        private static void WritePackId(string id, byte[] buffer, int index)
        {
            if (id.Length != PackIdBytes * 2) throw new ArgumentException($"Bad pack id '{id}'.");
            for (int i = 0; i < PackIdBytes; i++)
                buffer[index + i] = Convert.ToByte(id.Substring(2 * i, 2), 16);
        }
    }
}
