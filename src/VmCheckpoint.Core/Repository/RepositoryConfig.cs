using System;
using System.IO;
using System.Text;
using LiteDB;

namespace VmCheckpoint.Core.Repository
{
    /// <summary>The repository's fixed parameters, written once at creation.</summary>
    public sealed class RepositoryConfig
    {
        public const int CurrentFormat = 1;
        public const int DefaultBlockSize = 1 << 20;
        public const int MinBlockSize = 64 << 10;
        public const int MaxBlockSize = 16 << 20;

        public string Id { get; set; } = "";
        public int BlockSize { get; set; } = DefaultBlockSize;
        public DateTime Created { get; set; }

        public static bool IsValidBlockSize(int size) => size >= MinBlockSize && size <= MaxBlockSize && (size & (size - 1)) == 0;

        internal byte[] Serialize()
        {
            var doc = new BsonDocument
            {
                ["format"] = CurrentFormat,
                ["id"] = Id,
                ["blockSize"] = BlockSize,
                ["hash"] = "sha256",
                ["compression"] = "zstd",
                ["created"] = Created.ToUniversalTime().ToString("o"),
            };
            return Encoding.UTF8.GetBytes(JsonSerializer.Serialize(doc, indent: true));
        }

        internal static RepositoryConfig Parse(byte[] content, string source)
        {
            try
            {
                var doc = JsonSerializer.Deserialize(Encoding.UTF8.GetString(content)) as BsonDocument
                          ?? throw new InvalidDataException($"{source}: not a JSON object.");
                if (doc["format"].AsInt32 != CurrentFormat)
                    throw new InvalidDataException($"{source}: repository format {doc["format"]} is not supported by this version.");
                if (doc["hash"].AsString != "sha256" || doc["compression"].AsString != "zstd")
                    throw new InvalidDataException($"{source}: unsupported hash or compression.");
                var config = new RepositoryConfig
                {
                    Id = doc["id"].AsString ?? "",
                    BlockSize = doc["blockSize"].AsInt32,
                    Created = DateTime.Parse(doc["created"].AsString, null, System.Globalization.DateTimeStyles.RoundtripKind).ToUniversalTime(),
                };
                if (config.Id.Length != 32 || !IsValidBlockSize(config.BlockSize))
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
