using System;
using System.IO;
using System.Linq;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>
    /// The repository's fixed parameters, written once at creation. The file carries a SHA-256 of its own bytes
    /// (<c>checksum</c>, computed with its value as 64 zeros), so that any damaged byte is refused at open; a
    /// configuration written before the checksum existed is read when it holds exactly the fields it had then.
    /// </summary>
    public sealed class RepositoryConfig
    {
        public const int CurrentFormat = 1;
        /// <summary>Format 1 with everything but the configuration and locks encrypted: versions that do not encrypt refuse it rather than write plain data into it.</summary>
        public const int EncryptedFormat = 2;
        public const string Aes256GcmName = "aes-256-gcm";
        public const int DefaultBlockSize = 1 << 20;
        public const int MinBlockSize = 64 << 10;
        public const int MaxBlockSize = 16 << 20;

        public string Id { get; set; } = "";
        public int BlockSize { get; set; } = DefaultBlockSize;
        public DateTime Created { get; set; }
        /// <summary>
        /// Days every pack and manifest is kept from deletion by S3 Object Lock once written (0: none). Written only
        /// when set, so that configurations without it stay byte for byte as before.
        /// </summary>
        public int RetainDays { get; set; }
        public const int MaxRetainDays = 36500;

        /// <summary>"aes-256-gcm" for an encrypted repository (keys under keys/), null otherwise.</summary>
        public string? Encryption { get; set; }

        public bool Encrypted => Encryption != null;

        private const string ChecksumKey = "checksum";
        private static readonly string ChecksumPlaceholder = new string('0', 64);
        /// <summary>The fields of a configuration written before it had a checksum: nothing else may be in one without.</summary>
        private static readonly string[] FieldsWithoutChecksum = { "format", "id", "blockSize", "hash", "compression", "created" };

        public static bool IsValidBlockSize(int size) => size >= MinBlockSize && size <= MaxBlockSize && (size & (size - 1)) == 0;

        internal byte[] Serialize()
        {
            var doc = new BsonDocument
            {
                ["format"] = Encrypted ? EncryptedFormat : CurrentFormat,
                ["id"] = Id,
                ["blockSize"] = BlockSize,
                ["hash"] = "sha256",
                ["compression"] = "zstd",
                ["created"] = Created.ToUniversalTime().ToString("o"),
            };
            if (RetainDays > 0) doc["retainDays"] = RetainDays;
            if (Encrypted) doc["encryption"] = Encryption;
            doc[ChecksumKey] = ChecksumPlaceholder;
            var text = JsonSerializer.Serialize(doc, indent: true);
            return Encoding.UTF8.GetBytes(text.Replace(Quoted(ChecksumPlaceholder), Quoted(Checksum(Encoding.UTF8.GetBytes(text)))));
        }

        private static string Quoted(string value) => "\"" + value + "\"";

        private static string Checksum(byte[] content)
        {
            using (var sha = System.Security.Cryptography.SHA256.Create()) return Hex.Encode(sha.ComputeHash(content));
        }

        /// <summary>
        /// Checks the file's bytes against its checksum: its value is found in the text, put back to zeros, and the
        /// whole hashed again. Any byte changed, the checksum's own included, fails; so does a checksum field whose
        /// name was damaged (the file then holds a field no version writes without one).
        /// </summary>
        private static void CheckIntegrity(BsonDocument doc, byte[] content, string source)
        {
            if (!doc.ContainsKey(ChecksumKey))
            {
                var unknown = doc.Keys.Where(k => !FieldsWithoutChecksum.Contains(k)).ToList();
                if (unknown.Count > 0 || doc.Keys.Count != FieldsWithoutChecksum.Length)
                    throw new InvalidDataException($"{source}: damaged repository configuration (no checksum, and fields {string.Join(", ", doc.Keys)}).");
                return; // written before configurations had a checksum
            }
            var value = doc[ChecksumKey];
            string text = Encoding.UTF8.GetString(content);
            if (!value.IsString || value.AsString.Length != 64)
                throw new InvalidDataException($"{source}: damaged repository configuration (its checksum is not 64 hex digits).");
            string quoted = Quoted(value.AsString);
            int at = text.IndexOf(quoted, StringComparison.Ordinal);
            if (at < 0 || text.IndexOf(quoted, at + 1, StringComparison.Ordinal) >= 0)
                throw new InvalidDataException($"{source}: damaged repository configuration (its checksum cannot be located).");
            var zeroed = Encoding.UTF8.GetBytes(text.Substring(0, at) + Quoted(ChecksumPlaceholder) + text.Substring(at + quoted.Length));
            if (!string.Equals(Checksum(zeroed), value.AsString, StringComparison.Ordinal))
                throw new InvalidDataException($"{source}: damaged repository configuration (its content does not match its checksum).");
        }

        internal static RepositoryConfig Parse(byte[] content, string source)
        {
            try
            {
                var doc = JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)) as BsonDocument
                          ?? throw new InvalidDataException($"{source}: not a JSON object.");
                CheckIntegrity(doc, content, source);
                int format = doc["format"].AsInt32;
                if (format != CurrentFormat && format != EncryptedFormat)
                    throw new InvalidDataException($"{source}: repository format {doc["format"]} is not supported by this version.");
                if (doc["hash"].AsString != "sha256" || doc["compression"].AsString != "zstd")
                    throw new InvalidDataException($"{source}: unsupported hash or compression.");
                var config = new RepositoryConfig
                {
                    Id = doc["id"].AsString ?? "",
                    BlockSize = doc["blockSize"].AsInt32,
                    Created = DateTime.Parse(doc["created"].AsString, null, System.Globalization.DateTimeStyles.RoundtripKind).ToUniversalTime(),
                };
                if (doc.ContainsKey("retainDays")) config.RetainDays = doc["retainDays"].AsInt32;
                if (doc.ContainsKey("encryption")) config.Encryption = doc["encryption"].AsString;
                if ((format == EncryptedFormat) != config.Encrypted || (config.Encrypted && config.Encryption != Aes256GcmName))
                    throw new InvalidDataException($"{source}: format {format} with encryption '{config.Encryption}' is not supported by this version.");
                if (config.Id.Length != 32 || !IsValidBlockSize(config.BlockSize) || config.RetainDays < 0 || config.RetainDays > MaxRetainDays)
                    throw new InvalidDataException($"{source}: id or block size is not valid.");
                return config;
            }
            catch (Exception e) when (e is LiteException || e is InvalidCastException || e is FormatException || e is ArgumentNullException)
            {
                throw new InvalidDataException($"{source}: damaged repository configuration ({e.Message}).");
            }
        }
    }
}
