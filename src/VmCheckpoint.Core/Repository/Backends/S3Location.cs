using System;
using System.Text.RegularExpressions;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// A repository in S3: <c>s3://bucket</c> or <c>s3://bucket/prefix</c>. The endpoint and the credentials are not
    /// part of it: they come from the AWS conventions (<see cref="S3Backend"/>), so that the same location names the
    /// same repository from every host.
    /// </summary>
    internal sealed class S3Location
    {
        public const string Scheme = "s3://";

        // S3's rules for bucket names (3-63 characters of lower-case letters, digits, '.' and '-', starting and ending
        // with a letter or digit); Ceph and AWS enforce them, and an address that breaks them never reaches a bucket.
        private static readonly Regex BucketRule = new Regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", RegexOptions.CultureInvariant);

        private S3Location(string bucket, string prefix)
        {
            Bucket = bucket;
            Prefix = prefix;
        }

        public string Bucket { get; }

        /// <summary>The folder-like prefix of every key of the repository, without leading or trailing '/'; may be empty.</summary>
        public string Prefix { get; }

        /// <summary>The canonical form: <c>s3://bucket/prefix</c> (no trailing '/').</summary>
        public override string ToString() => Scheme + Bucket + (Prefix.Length == 0 ? "" : "/" + Prefix);

        /// <summary>The S3 key of an object of the repository.</summary>
        public string Key(string name) => Prefix.Length == 0 ? name : Prefix + "/" + name;

        /// <summary>True when <paramref name="location"/> is meant as an S3 address (starts with s3://, any case).</summary>
        public static bool IsS3(string? location) =>
            location != null && location.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase);

        /// <summary>Parses <c>s3://bucket[/prefix][/]</c>; <see cref="ArgumentException"/> saying what is wrong otherwise.</summary>
        public static S3Location Parse(string location)
        {
            if (!IsS3(location)) throw new ArgumentException($"'{location}' is not an S3 address: write s3://bucket or s3://bucket/prefix.", nameof(location));
            string rest = location.Substring(Scheme.Length);
            int slash = rest.IndexOf('/');
            string bucket = slash < 0 ? rest : rest.Substring(0, slash);
            string prefix = slash < 0 ? "" : rest.Substring(slash + 1).TrimEnd('/');
            if (bucket.Length == 0) throw new ArgumentException($"'{location}' names no bucket: write s3://bucket or s3://bucket/prefix.", nameof(location));
            if (!BucketRule.IsMatch(bucket) || bucket.Contains("..") || Regex.IsMatch(bucket, @"^\d+\.\d+\.\d+\.\d+$"))
                throw new ArgumentException($"'{bucket}' in '{location}' is not a valid S3 bucket name (3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit).", nameof(location));
            if (prefix.Length > 0)
            {
                foreach (var segment in prefix.Split('/'))
                {
                    if (segment.Length == 0 || segment == "." || segment == ".." || segment.IndexOf('\\') >= 0)
                        throw new ArgumentException($"'{prefix}' in '{location}' is not a valid prefix: its parts must be non-empty, not '.' or '..', without '\\'.", nameof(location));
                }
                if (prefix.Length > 512) throw new ArgumentException($"The prefix of '{location}' is longer than 512 characters: S3 keys are at most 1024 bytes.", nameof(location));
            }
            return new S3Location(bucket, prefix);
        }
    }
}
