using System;
using System.IO;
using System.Security.Cryptography;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Repository.Encryption
{
    /// <summary>
    /// One password's copy of the master key: <c>keys/&lt;id&gt;.key</c>, JSON holding the Argon2id parameters and salt, and
    /// the master key sealed (AES-256-GCM) under the key Argon2id derives from the password, bound to the repository's
    /// id. Adding or changing a password writes or deletes a slot; the data is never re-encrypted.
    /// Argon2id through libargon2 on Linux, BouncyCastle elsewhere (<see cref="Argon2id"/>).
    /// </summary>
    internal sealed class KeySlot
    {
        /// <summary>RFC 9106's second recommended setting: 64 MiB, 3 passes, 4 lanes.</summary>
        public const int DefaultMemoryKiB = 64 * 1024;
        public const int DefaultIterations = 3;
        public const int DefaultParallelism = 4;

        public string Kdf { get; private set; } = "argon2id";
        public int MemoryKiB { get; private set; } = DefaultMemoryKiB;
        public int Iterations { get; private set; } = DefaultIterations;
        public int Parallelism { get; private set; } = DefaultParallelism;
        public byte[] Salt { get; private set; } = Array.Empty<byte>();
        public byte[] WrappedKey { get; private set; } = Array.Empty<byte>();
        public DateTime Created { get; private set; }
        public string Host { get; private set; } = "";

        public static KeySlot Create(RepositoryKey key, byte[] password, string repositoryId)
        {
            var salt = new byte[16];
            Aes256Gcm.RandomBytes(salt);
            var slot = new KeySlot { Salt = salt, Created = DateTime.UtcNow, Host = Environment.MachineName };
            slot.WrappedKey = Aes256Gcm.Seal(slot.Derive(password), key.ToBytes(), slot.Context(repositoryId));
            return slot;
        }

        /// <summary>The master key, or null when the password is not this slot's.</summary>
        public RepositoryKey? TryUnlock(byte[] password, string repositoryId)
        {
            try
            {
                return RepositoryKey.FromBytes(Aes256Gcm.Open(Derive(password), WrappedKey, Context(repositoryId)));
            }
            catch (CryptographicException)
            {
                return null;
            }
        }

        /// <summary>
        /// What the wrapped key is bound to: its repository and every other field of the slot, so that a slot altered in
        /// any way (its parameters, its date, its host) opens with no password rather than pass for intact.
        /// </summary>
        private byte[] Context(string repositoryId) => Encoding.UTF8.GetBytes(string.Join("\n", "vmcheckpoint key", repositoryId, Kdf,
            MemoryKiB.ToString(System.Globalization.CultureInfo.InvariantCulture), Iterations.ToString(System.Globalization.CultureInfo.InvariantCulture),
            Parallelism.ToString(System.Globalization.CultureInfo.InvariantCulture), Convert.ToBase64String(Salt),
            Created.ToUniversalTime().ToString("o", System.Globalization.CultureInfo.InvariantCulture), Host));

        private byte[] Derive(byte[] password) => Argon2id.Derive(password, Salt, MemoryKiB, Iterations, Parallelism, Aes256Gcm.KeySize);

        public byte[] Serialize()
        {
            var doc = new BsonDocument
            {
                ["kdf"] = Kdf,
                ["memoryKiB"] = MemoryKiB,
                ["iterations"] = Iterations,
                ["parallelism"] = Parallelism,
                ["salt"] = Convert.ToBase64String(Salt),
                ["key"] = Convert.ToBase64String(WrappedKey),
                ["created"] = Created.ToUniversalTime().ToString("o", System.Globalization.CultureInfo.InvariantCulture),
                ["host"] = Host,
            };
            return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(doc, indent: true));
        }

        public static KeySlot Parse(byte[] content, string source)
        {
            try
            {
                var doc = JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)) as BsonDocument
                          ?? throw new InvalidDataException($"{source}: not a JSON object.");
                var slot = new KeySlot
                {
                    Kdf = doc["kdf"].AsString,
                    MemoryKiB = doc["memoryKiB"].AsInt32,
                    Iterations = doc["iterations"].AsInt32,
                    Parallelism = doc["parallelism"].AsInt32,
                    Salt = Convert.FromBase64String(doc["salt"].AsString),
                    WrappedKey = Convert.FromBase64String(doc["key"].AsString),
                    Created = DateTime.Parse(doc["created"].AsString, null, System.Globalization.DateTimeStyles.RoundtripKind).ToUniversalTime(),
                    Host = doc["host"].AsString ?? "",
                };
                // Bounds keep a planted slot from making every open spend gigabytes or hours.
                if (slot.Kdf != "argon2id" || slot.MemoryKiB < 8 * 1024 || slot.MemoryKiB > 4 * 1024 * 1024 || slot.Iterations < 1 || slot.Iterations > 100
                    || slot.Parallelism < 1 || slot.Parallelism > 64 || slot.Salt.Length < 16 || slot.WrappedKey.Length != RepositoryKey.Size + Aes256Gcm.Overhead)
                    throw new InvalidDataException($"{source}: unsupported or damaged key parameters.");
                return slot;
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is FormatException || e is ArgumentNullException || e is NullReferenceException)
            {
                throw new InvalidDataException($"{source}: damaged key file ({e.Message}).");
            }
        }
    }
}
