using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;

namespace VmCheckpoint.Core.Repository.Encryption
{
    /// <summary>
    /// The master key of an encrypted repository: 64 random bytes made once at creation and stored only wrapped by
    /// passwords (<see cref="KeySlot"/>). The first half encrypts (AES-256-GCM) every blob, index file and manifest; the
    /// second keys the block ids (HMAC-SHA256), so that whoever holds the storage cannot test for known content by its
    /// hash, and the VM keys that name manifest folders. See docs/repository-format.md, "Encryption".
    /// </summary>
    internal sealed class RepositoryKey
    {
        public const int Size = 64;
        private readonly byte[] _data = new byte[32];
        private readonly byte[] _id = new byte[32];

        private RepositoryKey(byte[] material)
        {
            if (material.Length != Size) throw new InvalidDataException($"A repository key is {Size} bytes, not {material.Length}.");
            Buffer.BlockCopy(material, 0, _data, 0, 32);
            Buffer.BlockCopy(material, 32, _id, 0, 32);
        }

        public static RepositoryKey Generate()
        {
            var material = new byte[Size];
            Aes256Gcm.RandomBytes(material);
            return new RepositoryKey(material);
        }

        public static RepositoryKey FromBytes(byte[] material) => new RepositoryKey(material);

        public byte[] ToBytes()
        {
            var material = new byte[Size];
            Buffer.BlockCopy(_data, 0, material, 0, 32);
            Buffer.BlockCopy(_id, 0, material, 32, 32);
            return material;
        }

        /// <summary>The associated data of a whole object: its kind, so that an index file cannot pass for a manifest.</summary>
        private static byte[] ObjectContext(string kind) => Encoding.ASCII.GetBytes("vmcheckpoint " + kind);

        public byte[] SealObject(byte[] plain, string kind) => Aes256Gcm.Seal(_data, plain, ObjectContext(kind));

        /// <summary>Decrypts a whole object; a changed byte or another key is <see cref="InvalidDataException"/> naming it.</summary>
        public byte[] OpenObject(byte[] stored, string kind, string source)
        {
            try
            {
                return Aes256Gcm.Open(_data, stored, ObjectContext(kind));
            }
            catch (CryptographicException)
            {
                throw new InvalidDataException($"{source}: does not decrypt with the repository's key (damaged or altered {kind}).");
            }
        }

        /// <summary>Encrypts a blob's stored (compressed) bytes, bound to its block id; returns the sealed length.</summary>
        public int SealBlob(BlockHash hash, byte[] stored, int length, byte[] output)
        {
            var id = new byte[BlockHash.Size];
            hash.WriteTo(id, 0);
            return Aes256Gcm.Seal(_data, stored, 0, length, output, id);
        }

        /// <summary>Decrypts a sealed blob into <paramref name="output"/>; returns the stored (compressed) length, or throws <see cref="CryptographicException"/>.</summary>
        public int OpenBlob(BlockHash hash, byte[] sealedBlob, int length, byte[] output)
        {
            var id = new byte[BlockHash.Size];
            hash.WriteTo(id, 0);
            return Aes256Gcm.Open(_data, sealedBlob, length, output, id);
        }

        /// <summary>The block id function: HMAC-SHA256 under the id key (a SHA-256 in unencrypted repositories).</summary>
        public HashAlgorithm NewBlockHasher() => new HMACSHA256(_id);

        /// <summary>The folder of a VM's manifests: 16 hex digits of an HMAC of its name, never the name or a plain hash of it.</summary>
        public string VmKey(string vmName)
        {
            using (var hmac = new HMACSHA256(_id))
                return Hex.Encode(hmac.ComputeHash(Encoding.UTF8.GetBytes("vm " + vmName)), 0, 8);
        }
    }
}
