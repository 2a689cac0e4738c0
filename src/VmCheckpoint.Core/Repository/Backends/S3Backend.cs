using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Threading;
using System.Threading.Tasks;
using Amazon;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// A repository in an S3 bucket (Amazon S3, Ceph's radosgw, any S3 gateway), under a prefix: an object is the key
    /// <c>prefix/name</c>. Tested against a real radosgw (tests/hosts/start-s3.sh, tests/Pester/S3.Tests.ps1).
    /// </summary>
    /// <remarks>
    /// <para><b>How the contract of <see cref="IRepositoryBackend"/> is kept.</b> S3 has no rename and needs none: a PUT
    /// is atomic (an object appears whole or not at all), and so is completing a multipart upload, whose parts are never
    /// visible. Put once: small objects are PUT with <c>If-None-Match: *</c>, which S3 and radosgw refuse with
    /// 412 when the key exists; a pack (multipart) has a random 128-bit name that no other writer can choose, and its
    /// upload is completed only after a HEAD found no object of that name. Read after write, listings included: Amazon S3
    /// has been strongly consistent since December 2020, and radosgw updates its bucket index before it answers a PUT
    /// or DELETE. A store whose listings lag would have to wait its lag out in <see cref="List"/> (docs/repository-format.md).</para>
    /// <para><b>Errors.</b> The SDK retries 5xx answers, SlowDown and broken connections itself (its "standard" retry
    /// mode: exponential back-off with jitter, <see cref="MaxRetries"/> retries); what still fails is an
    /// <see cref="IOException"/> naming the bucket, the object and the endpoint, or an <see cref="UnauthorizedAccessException"/>
    /// for refused credentials. Only a missing object is an answer (404 on a key); a missing bucket is an error.</para>
    /// </remarks>
    internal sealed class S3Backend : IRepositoryBackend
    {
        /// <summary>Retries after the first attempt (the SDK's standard mode backs off exponentially, with jitter).</summary>
        public const int MaxRetries = 4;

        /// <summary>Parts of a multipart upload: S3 needs at least 5 MiB (but the last); a 32 MiB pack is four.</summary>
        internal const int PartSize = 8 * 1024 * 1024;

        /// <summary>Parts of one object uploading at once, while the next part fills.</summary>
        internal const int PartsInFlight = 3;

        /// <summary>A read that goes on where the last one ended fetches this much ahead (verification reads packs in order).</summary>
        internal const int ReadAhead = 8 * 1024 * 1024;

        private readonly IAmazonS3 _client;
        private readonly string _endpoint;

        public S3Backend(S3Location location, IAmazonS3 client, string endpoint)
        {
            Where = location;
            _client = client;
            _endpoint = endpoint;
        }

        /// <summary>A backend for <paramref name="location"/> with the endpoint, region and credentials of the AWS conventions.</summary>
        public static S3Backend Connect(S3Location location) => Connect(location, S3Settings.FromEnvironment(), null);

        /// <summary>A backend with given settings, and credentials (null: the SDK's default chain).</summary>
        internal static S3Backend Connect(S3Location location, S3Settings settings, AWSCredentials? credentials)
        {
            AmazonS3Client client;
            try
            {
                client = credentials is null ? new AmazonS3Client(settings.ToConfig()) : new AmazonS3Client(credentials, settings.ToConfig());
            }
            catch (AmazonClientException e)
            {
                throw new ArgumentException($"No S3 endpoint for {location}: {e.Message} Set AWS_ENDPOINT_URL (a gateway such as radosgw or MinIO) or AWS_REGION (Amazon S3).", e);
            }
            return new S3Backend(location, client, settings.Describe());
        }

        public S3Location Where { get; }

        public string Location => Where.ToString();

        public string Locate(string name) => S3Location.Scheme + Where.Bucket + "/" + Where.Key(name);

        private string Root => Where.Prefix.Length == 0 ? "" : Where.Prefix + "/";

        public bool LocationExists()
        {
            try
            {
                Call("list", Location, () => _client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Where.Bucket, Prefix = Root, MaxKeys = 1 }));
                return true;
            }
            catch (S3BucketMissingException)
            {
                return false;
            }
        }

        public void CreateLocation(IReadOnlyCollection<string> prefixes)
        {
            ListObjectsV2Response listing;
            try
            {
                listing = Call("list", Location, () => _client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Where.Bucket, Prefix = Root, MaxKeys = 1 }));
            }
            catch (S3BucketMissingException)
            {
                Call("create the bucket", S3Location.Scheme + Where.Bucket, () => _client.PutBucketAsync(new PutBucketRequest { BucketName = Where.Bucket }));
                return;
            }
            if (listing.S3Objects != null && listing.S3Objects.Count > 0)
                throw new LocationNotEmptyException($"{Location} is not empty; a repository needs a prefix of its own (another s3://{Where.Bucket}/prefix, or an empty bucket).");
        }

        /// <summary>
        /// How long packs and manifests are kept from deletion by S3 Object Lock (compliance mode: nobody, not even
        /// the bucket's owner, deletes them before); null: no retention. Set from the repository's configuration.
        /// </summary>
        internal TimeSpan? RetainFor { get; set; }

        /// <summary>Packs and manifests are retained: what a checkpoint restores from. Index files and locks are rewritten and deleted by design.</summary>
        private DateTime? RetainUntil(string name) =>
            RetainFor is TimeSpan period && (name.StartsWith(RepositoryLayout.PacksPrefix, StringComparison.Ordinal) || name.StartsWith(RepositoryLayout.CheckpointsPrefix, StringComparison.Ordinal))
                ? DateTime.UtcNow + period
                : (DateTime?)null;

        /// <summary>
        /// Checks that the bucket has S3 Object Lock enabled, creating it with Object Lock when it does not exist yet.
        /// A bucket without it cannot get it afterwards on most stores: the error says to use another bucket.
        /// </summary>
        internal void RequireObjectLock()
        {
            if (!LocationExists())
                Call("create the bucket", S3Location.Scheme + Where.Bucket, () => _client.PutBucketAsync(new PutBucketRequest { BucketName = Where.Bucket, ObjectLockEnabledForBucket = true }));
            GetObjectLockConfigurationResponse? answer = null;
            try
            {
                answer = Call("read the Object Lock configuration of", S3Location.Scheme + Where.Bucket, () => _client.GetObjectLockConfigurationAsync(new GetObjectLockConfigurationRequest { BucketName = Where.Bucket }));
            }
            catch (IOException)
            {
                // No configuration at all: Object Lock is off (S3 answers ObjectLockConfigurationNotFoundError).
            }
            if (answer?.ObjectLockConfiguration?.ObjectLockEnabled != ObjectLockEnabled.Enabled)
                throw new InvalidOperationException($"The bucket {Where.Bucket} does not have S3 Object Lock enabled, so -RetainDays cannot keep anything from deletion. " +
                    "Object Lock is chosen when a bucket is created: give a new bucket (VmCheckpoint creates it with Object Lock), or create one with it (aws s3api create-bucket --object-lock-enabled-for-bucket).");
        }

        private static string Md5Base64(byte[] content, int length)
        {
            using (var md5 = System.Security.Cryptography.MD5.Create()) return Convert.ToBase64String(md5.ComputeHash(content, 0, length));
        }

        public void Put(string name, byte[] content) => PutWhole(name, content, content.Length);

        private void PutWhole(string name, byte[] content, int length)
        {
            string key = KeyOf(name);
            var request = new PutObjectRequest
            {
                BucketName = Where.Bucket,
                Key = key,
                InputStream = new MemoryStream(content, 0, length, writable: false),
                AutoCloseStream = true,
                IfNoneMatch = "*",
                UseChunkEncoding = false, // one signature over the whole body: the plainest form every gateway takes
            };
            if (RetainUntil(name) is DateTime until)
            {
                request.ObjectLockMode = ObjectLockMode.Compliance;
                request.ObjectLockRetainUntilDate = until;
                request.MD5Digest = Md5Base64(content, length); // S3 wants Content-MD5 with a retention
            }
            try
            {
                Call("write", Locate(name), () => _client.PutObjectAsync(request));
            }
            catch (ObjectExistsException) when (HoldsExactly(name, content, length))
            {
                // The SDK retried a PUT whose first attempt did land (its answer was lost): the object is ours.
            }
        }

        private bool HoldsExactly(string name, byte[] content, int length)
        {
            try
            {
                var stored = this.ReadAll(name);
                return stored.Length == length && stored.AsSpan().SequenceEqual(content.AsSpan(0, length));
            }
            catch (IOException)
            {
                return false;
            }
        }

        public IObjectWriter OpenWrite(string name) => new Writer(this, name, KeyOf(name));

        public IObjectReader OpenRead(string name)
        {
            var info = GetInfo(name);
            if (info is null) throw new ObjectNotFoundException($"{Locate(name)} does not exist.", Locate(name));
            return new Reader(this, name, KeyOf(name), info.Length ?? 0);
        }

        public ObjectInfo? GetInfo(string name)
        {
            string key = KeyOf(name);
            try
            {
                var head = Call("read", Locate(name), () => _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = Where.Bucket, Key = key }));
                return new ObjectInfo(name, head.ContentLength, head.LastModified?.ToUniversalTime(), head.ObjectLockRetainUntilDate?.ToUniversalTime());
            }
            catch (S3ObjectMissingException)
            {
                return null;
            }
        }

        public IReadOnlyList<ObjectInfo> List(string prefix)
        {
            CheckName(prefix, isPrefix: true);
            var result = new List<ObjectInfo>();
            var request = new ListObjectsV2Request { BucketName = Where.Bucket, Prefix = Root + prefix };
            while (true)
            {
                var page = Call("list", Locate(prefix.Length == 0 ? "." : prefix.TrimEnd('/')).TrimEnd('.'), () => _client.ListObjectsV2Async(request));
                foreach (var o in page.S3Objects ?? new List<S3Object>())
                {
                    if (!o.Key.StartsWith(Root, StringComparison.Ordinal)) continue;
                    string name = o.Key.Substring(Root.Length);
                    if (!IsValidName(name)) continue; // a folder marker ("x/") or a key some other tool wrote
                    result.Add(new ObjectInfo(name, o.Size, o.LastModified?.ToUniversalTime()));
                }
                if (page.IsTruncated != true || string.IsNullOrEmpty(page.NextContinuationToken)) return result;
                request.ContinuationToken = page.NextContinuationToken;
            }
        }

        public void Delete(string name)
        {
            string key = KeyOf(name);
            try
            {
                Call("delete", Locate(name), () => _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = Where.Bucket, Key = key }));
                if (RetainFor.HasValue) DeleteOlderVersions(name, key);
            }
            catch (S3ObjectMissingException)
            {
            }
        }

        /// <summary>
        /// An Object Lock bucket keeps versions: a plain DELETE only hides the object behind a delete marker and frees
        /// nothing. Once its retention is over (the caller checks), every version of the key goes, marker included.
        /// </summary>
        private void DeleteOlderVersions(string name, string key)
        {
            var request = new ListVersionsRequest { BucketName = Where.Bucket, Prefix = key };
            while (true)
            {
                var page = Call("list the versions of", Locate(name), () => _client.ListVersionsAsync(request));
                foreach (var v in page.Versions ?? new List<S3ObjectVersion>())
                {
                    if (!string.Equals(v.Key, key, StringComparison.Ordinal)) continue;
                    Call("delete", Locate(name), () => _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = Where.Bucket, Key = key, VersionId = v.VersionId }));
                }
                if (page.IsTruncated != true) return;
                request.KeyMarker = page.NextKeyMarker;
                request.VersionIdMarker = page.NextVersionIdMarker;
            }
        }

        /// <summary>Aborts multipart uploads under the prefix that a killed process left unfinished (their parts cost space).</summary>
        public int RemoveAbandoned(TimeSpan olderThan)
        {
            int removed = 0;
            var request = new ListMultipartUploadsRequest { BucketName = Where.Bucket, Prefix = Root };
            while (true)
            {
                var page = Call("list the unfinished uploads of", Location, () => _client.ListMultipartUploadsAsync(request));
                foreach (var upload in page.MultipartUploads ?? new List<MultipartUpload>())
                {
                    if (upload.Initiated is DateTime started && DateTime.UtcNow - started.ToUniversalTime() <= olderThan) continue;
                    try
                    {
                        Call("abort an upload of", S3Location.Scheme + Where.Bucket + "/" + upload.Key,
                            () => _client.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = Where.Bucket, Key = upload.Key, UploadId = upload.UploadId }));
                        removed++;
                    }
                    catch (S3ObjectMissingException)
                    {
                    }
                }
                if (page.IsTruncated != true) return removed;
                request.KeyMarker = page.NextKeyMarker;
                request.UploadIdMarker = page.NextUploadIdMarker;
            }
        }

        private string KeyOf(string name)
        {
            CheckName(name, isPrefix: false);
            return Where.Key(name);
        }

        private static bool IsValidName(string name)
        {
            try
            {
                CheckName(name, isPrefix: false);
                return true;
            }
            catch (ArgumentException)
            {
                return false;
            }
        }

        /// <summary>The names of <see cref="IRepositoryBackend"/>: relative, '/'-separated, no empty, "." or ".." segment, no '.tmp' end.</summary>
        internal static void CheckName(string name, bool isPrefix)
        {
            if (name is null) throw new ArgumentNullException(nameof(name));
            if (isPrefix && name.Length == 0) return;
            bool bad = name.IndexOf('\\') >= 0 || name.StartsWith("/", StringComparison.Ordinal)
                       || (!isPrefix && (name.EndsWith("/", StringComparison.Ordinal) || name.EndsWith(".tmp", StringComparison.Ordinal)));
            if (!bad)
            {
                var segments = name.Split('/');
                for (int i = 0; i < segments.Length && !bad; i++)
                {
                    bool last = i == segments.Length - 1;
                    bad = isPrefix && last ? segments[i] == "." || segments[i] == ".." : segments[i].Length == 0 || segments[i] == "." || segments[i] == "..";
                }
            }
            if (bad) throw new ArgumentException($"'{name}' is not a valid object name{(isPrefix ? " prefix" : "")}.", nameof(name));
        }

        /// <summary>
        /// Runs one SDK call (its retries included) and turns what fails into the contract's exceptions: a missing key
        /// or bucket into the private markers above, refused credentials into <see cref="UnauthorizedAccessException"/>,
        /// a key that exists (412) into <see cref="ObjectExistsException"/>, anything else into <see cref="IOException"/>.
        /// </summary>
        private T Call<T>(string action, string what, Func<Task<T>> call)
        {
            try
            {
                return Task.Run(call).GetAwaiter().GetResult(); // Task.Run: no caller's synchronization context is captured
            }
            catch (Exception e)
            {
                throw Translate(e, action, what);
            }
        }

        internal Exception Translate(Exception e, string action, string what)
        {
            while (e is AggregateException a && a.InnerException != null) e = a.InnerException;
            switch (e)
            {
                case AmazonS3Exception s3 when s3.ErrorCode == "NoSuchBucket":
                    return new S3BucketMissingException(
                        $"The bucket {Where.Bucket} does not exist at {_endpoint} (to {action} {what}): create the repository with New-VmCheckpointRepository {Location}, or check the address and AWS_ENDPOINT_URL.");
                case AmazonS3Exception s3 when s3.StatusCode == HttpStatusCode.NotFound:
                    return new S3ObjectMissingException($"{what} does not exist.", what);
                case AmazonS3Exception s3 when s3.StatusCode == HttpStatusCode.PreconditionFailed:
                    return new ObjectExistsException($"{what} exists already; objects are put once.");
                case AmazonS3Exception s3 when s3.StatusCode == HttpStatusCode.Forbidden || s3.ErrorCode == "InvalidAccessKeyId" || s3.ErrorCode == "SignatureDoesNotMatch" || s3.ErrorCode == "AccessDenied":
                    return new UnauthorizedAccessException(
                        $"{_endpoint} refused to {action} {what}: {s3.ErrorCode} ({s3.Message}). Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the profile AWS_PROFILE names) and that this user may use the bucket {Where.Bucket}.", s3);
                case AmazonServiceException service:
                    return new IOException(
                        $"Could not {action} {what}: {_endpoint} answered {(int)service.StatusCode} {service.ErrorCode} ({service.Message}), after {MaxRetries} retries. Try again once the gateway is healthy.", service);
                case AmazonClientException client when client.Message.IndexOf("credential", StringComparison.OrdinalIgnoreCase) >= 0:
                    return new UnauthorizedAccessException(
                        $"No AWS credentials to {action} {what}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials (AWS_PROFILE) ({client.Message})", client);
                case ObjectExistsException _:
                case ObjectNotFoundException _:
                case UnauthorizedAccessException _:
                case ArgumentException _:
                    return e;
                case AmazonClientException _:
                case HttpRequestException _:
                case WebException _:
                case SocketException _:
                case IOException _:
                case TaskCanceledException _:
                    return new IOException(
                        $"Could not {action} {what}: the S3 endpoint {_endpoint} cannot be reached ({e.Message}), after {MaxRetries} retries. Check that the gateway runs and that AWS_ENDPOINT_URL names it.", e);
                default:
                    return e;
            }
        }

        /// <summary>A key that does not exist: an answer, turned into null, nothing or <see cref="ObjectNotFoundException"/>.</summary>
        private sealed class S3ObjectMissingException : FileNotFoundException
        {
            public S3ObjectMissingException(string message, string where) : base(message, where) { }
        }

        /// <summary>The bucket does not exist: an error everywhere but <see cref="LocationExists"/> and <see cref="CreateLocation"/>.</summary>
        internal sealed class S3BucketMissingException : IOException
        {
            public S3BucketMissingException(string message) : base(message) { }
        }

        /// <summary>Ranged GETs of one object; reads that go on where the last one ended are served from a window fetched ahead.</summary>
        private sealed class Reader : IObjectReader
        {
            private readonly S3Backend _backend;
            private readonly string _name;
            private readonly string _key;
            private byte[]? _window;
            private long _windowStart;
            private int _windowLength;
            private long _lastEnd = -1;

            public Reader(S3Backend backend, string name, string key, long length)
            {
                _backend = backend;
                _name = name;
                _key = key;
                Length = length;
            }

            public long Length { get; }

            public int ReadAt(long offset, byte[] buffer, int index, int count)
            {
                if (offset >= Length || count <= 0) return 0;
                if (count > Length - offset) count = (int)(Length - offset);
                bool sequential = offset == _lastEnd;
                _lastEnd = offset + count;
                if (_window != null && offset >= _windowStart && offset + count <= _windowStart + _windowLength)
                {
                    Buffer.BlockCopy(_window, (int)(offset - _windowStart), buffer, index, count);
                    return count;
                }
                if (sequential && count < ReadAhead)
                {
                    int want = (int)Math.Min(ReadAhead, Length - offset);
                    _window ??= new byte[ReadAhead];
                    Fetch(offset, _window, 0, want);
                    _windowStart = offset;
                    _windowLength = want;
                    Buffer.BlockCopy(_window, 0, buffer, index, count);
                    return count;
                }
                Fetch(offset, buffer, index, count);
                return count;
            }

            private void Fetch(long offset, byte[] buffer, int index, int count)
            {
                string where = _backend.Locate(_name);
                try
                {
                    _backend.Call("read", where, async () =>
                    {
                        var request = new GetObjectRequest { BucketName = _backend.Where.Bucket, Key = _key, ByteRange = new ByteRange(offset, offset + count - 1) };
                        using var response = await _backend._client.GetObjectAsync(request).ConfigureAwait(false);
                        int done = 0;
                        while (done < count)
                        {
                            int n = await response.ResponseStream.ReadAsync(buffer, index + done, count - done).ConfigureAwait(false);
                            if (n <= 0) break;
                            done += n;
                        }
                        if (done != count) throw new IOException($"{where}: the gateway sent {done} of the {count} bytes asked for at {offset}.");
                        return done;
                    });
                }
                catch (S3ObjectMissingException)
                {
                    throw new ObjectNotFoundException($"{where} does not exist (any more).", where);
                }
            }

            public void Dispose() => _window = null;
        }

        /// <summary>
        /// An object written in parts: kept in memory while it is small (one PUT at <see cref="Commit"/>), a multipart
        /// upload once it passes <see cref="PartSize"/>, whose parts upload in the background while the next one fills.
        /// Nothing is visible until the upload is completed; disposed uncommitted, the upload is aborted.
        /// </summary>
        private sealed class Writer : IObjectWriter
        {
            private readonly S3Backend _backend;
            private readonly string _name;
            private readonly string _key;
            private readonly List<Task<PartETag>> _parts = new List<Task<PartETag>>();
            private readonly SemaphoreSlim _slots = new SemaphoreSlim(PartsInFlight);
            private byte[] _buffer = new byte[256 * 1024];
            private int _filled;
            private string? _uploadId;
            private bool _committed;
            private bool _broken;
            private bool _ended;

            public Writer(S3Backend backend, string name, string key)
            {
                _backend = backend;
                _name = name;
                _key = key;
            }

            public long Length { get; private set; }

            private string Where => _backend.Locate(_name);

            public void Write(byte[] buffer, int index, int count)
            {
                CheckUsable();
                try
                {
                    while (count > 0)
                    {
                        if (_filled == PartSize) StartPart();
                        if (_buffer.Length < PartSize && _filled + count > _buffer.Length)
                            Array.Resize(ref _buffer, (int)Math.Min(PartSize, Math.Max(_buffer.Length * 2L, _filled + (long)count)));
                        int n = Math.Min(count, _buffer.Length - _filled);
                        Buffer.BlockCopy(buffer, index, _buffer, _filled, n);
                        _filled += n;
                        index += n;
                        count -= n;
                        Length += n;
                    }
                }
                catch
                {
                    _broken = true;
                    throw;
                }
            }

            /// <summary>Sends the full buffer as the next part, in the background; waits while <see cref="PartsInFlight"/> are going.</summary>
            private void StartPart()
            {
                ThrowIfAPartFailed();
                if (_uploadId is null)
                {
                    var started = _backend.Call("start writing", Where, () => _backend._client.InitiateMultipartUploadAsync(
                        new InitiateMultipartUploadRequest
                        {
                            BucketName = _backend.Where.Bucket,
                            Key = _key,
                            ObjectLockMode = _backend.RetainUntil(_name).HasValue ? ObjectLockMode.Compliance : null,
                            ObjectLockRetainUntilDate = _backend.RetainUntil(_name),
                        }));
                    _uploadId = started.UploadId;
                }
                var part = _buffer;
                int length = _filled;
                int number = _parts.Count + 1;
                string uploadId = _uploadId;
                _buffer = new byte[PartSize];
                _filled = 0;
                _slots.Wait();
                _parts.Add(Task.Run(async () =>
                {
                    try
                    {
                        var response = await _backend._client.UploadPartAsync(new UploadPartRequest
                        {
                            BucketName = _backend.Where.Bucket,
                            Key = _key,
                            UploadId = uploadId,
                            PartNumber = number,
                            InputStream = new MemoryStream(part, 0, length, writable: false),
                            UseChunkEncoding = false,
                            MD5Digest = _backend.RetainFor.HasValue ? Md5Base64(part, length) : null,
                        }).ConfigureAwait(false);
                        return new PartETag(number, response.ETag);
                    }
                    finally
                    {
                        _slots.Release();
                    }
                }));
            }

            private void ThrowIfAPartFailed()
            {
                foreach (var part in _parts)
                {
                    if (part.IsFaulted || part.IsCanceled) part.GetAwaiter().GetResult();
                }
            }

            public void Commit()
            {
                CheckUsable();
                try
                {
                    if (_uploadId is null)
                    {
                        _backend.PutWhole(_name, _buffer, _filled);
                    }
                    else
                    {
                        if (_filled > 0) StartPart();
                        var etags = new List<PartETag>();
                        foreach (var part in _parts)
                        {
                            try
                            {
                                etags.Add(part.GetAwaiter().GetResult());
                            }
                            catch (Exception e)
                            {
                                throw _backend.Translate(e, "write", Where);
                            }
                        }
                        // Put once: a pack's name is random and no other writer picks it, but a HEAD costs little.
                        if (_backend.GetInfo(_name) != null) throw new ObjectExistsException($"{Where} exists already; objects are put once.");
                        _backend.Call("complete writing", Where, () => _backend._client.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
                        {
                            BucketName = _backend.Where.Bucket,
                            Key = _key,
                            UploadId = _uploadId,
                            PartETags = etags,
                        }));
                    }
                }
                catch
                {
                    _broken = true;
                    throw;
                }
                _committed = true;
                _buffer = Array.Empty<byte>();
            }

            private void CheckUsable()
            {
                if (_committed || _broken || _ended) throw new InvalidOperationException($"{Where}: this write has ended; start another.");
            }

            public void Dispose()
            {
                if (_committed || _ended) return;
                _ended = true;
                _buffer = Array.Empty<byte>();
                foreach (var part in _parts)
                {
                    try { part.Wait(); } catch (Exception) { }
                }
                if (_uploadId is null) return;
                try
                {
                    // What stays of an upload whose abort fails is never listed or read; RemoveAbandoned aborts it later.
                    _backend.Call("abort writing", Where, () => _backend._client.AbortMultipartUploadAsync(
                        new AbortMultipartUploadRequest { BucketName = _backend.Where.Bucket, Key = _key, UploadId = _uploadId }));
                }
                catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
                {
                }
            }
        }
    }
}
