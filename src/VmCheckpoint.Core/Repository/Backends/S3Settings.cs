using System;
using System.Collections.Generic;
using Amazon;
using Amazon.Runtime;
using Amazon.Runtime.CredentialManagement;
using Amazon.S3;

namespace VmCheckpoint.Core.Repository.Backends
{
    /// <summary>
    /// Where S3 is and how the client behaves, by the AWS conventions every S3 tool follows: <c>AWS_ENDPOINT_URL_S3</c> or
    /// <c>AWS_ENDPOINT_URL</c> for a gateway other than Amazon's (radosgw, MinIO), addressed path-style
    /// (<c>http://host:port/bucket/key</c>: such gateways rarely have a wildcard DNS name per bucket); <c>AWS_REGION</c>
    /// or <c>AWS_DEFAULT_REGION</c>. Credentials are the SDK's default chain: <c>AWS_ACCESS_KEY_ID</c> and
    /// <c>AWS_SECRET_ACCESS_KEY</c> (and <c>AWS_SESSION_TOKEN</c>), then the shared profiles of ~/.aws/credentials
    /// and ~/.aws/config (<c>AWS_PROFILE</c>), then the machine's role. Without the environment variables, the profile's
    /// <c>endpoint_url</c> and <c>region</c> are used.
    /// </summary>
    internal sealed class S3Settings
    {
        public const string DefaultRegion = "us-east-1";

        public S3Settings(string? endpoint, string? region)
        {
            Endpoint = string.IsNullOrWhiteSpace(endpoint) ? null : endpoint!.Trim();
            Region = string.IsNullOrWhiteSpace(region) ? null : region!.Trim();
            if (Endpoint != null && !(Uri.TryCreate(Endpoint, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)))
                throw new ArgumentException($"AWS_ENDPOINT_URL '{Endpoint}' is not an http:// or https:// address (e.g. http://127.0.0.1:7480).");
        }

        public string? Endpoint { get; }
        public string? Region { get; }

        public static S3Settings FromEnvironment(IDictionary<string, string?>? environment = null)
        {
            string? Get(string name) => environment != null
                ? (environment.TryGetValue(name, out var v) ? v : null)
                : Environment.GetEnvironmentVariable(name);
            string? endpoint = Get("AWS_ENDPOINT_URL_S3");
            if (string.IsNullOrWhiteSpace(endpoint)) endpoint = Get("AWS_ENDPOINT_URL");
            string? region = Get("AWS_REGION");
            if (string.IsNullOrWhiteSpace(region)) region = Get("AWS_DEFAULT_REGION");
            if (environment is null && (string.IsNullOrWhiteSpace(endpoint) || string.IsNullOrWhiteSpace(region)))
            {
                // The shared profile's endpoint_url and region (~/.aws/config, AWS_CONFIG_FILE, AWS_PROFILE): what a scheduled
                // run has, since a timer does not inherit the environment of the session that registered it. Read here so that
                // an endpoint from the profile is addressed path-style too.
                string profileName = Get("AWS_PROFILE") is { Length: > 0 } named ? named : "default";
                if (new CredentialProfileStoreChain().TryGetProfile(profileName, out var profile))
                {
                    if (string.IsNullOrWhiteSpace(endpoint)) endpoint = profile.EndpointUrl;
                    if (string.IsNullOrWhiteSpace(region)) region = profile.Region?.SystemName;
                }
            }
            return new S3Settings(endpoint, region);
        }

        public AmazonS3Config ToConfig()
        {
            var config = new AmazonS3Config
            {
                // 5xx, SlowDown, throttling and broken connections are retried with exponential back-off and jitter.
                RetryMode = RequestRetryMode.Standard,
                MaxErrorRetry = S3Backend.MaxRetries,
                Timeout = TimeSpan.FromSeconds(120),
                // The SDK's default adds CRC32 trailers in aws-chunked bodies, which gateways such as Ceph 16's radosgw
                // refuse; packs, indexes and manifests carry their own SHA-256 checksums, checked on every read.
                RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
                ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            };
            if (Endpoint != null)
            {
                config.ServiceURL = Endpoint;
                config.ForcePathStyle = true;
                config.AuthenticationRegion = Region ?? DefaultRegion;
            }
            else if (Region != null)
            {
                config.RegionEndpoint = RegionEndpoint.GetBySystemName(Region);
            }
            return config;
        }

        /// <summary>The endpoint, for messages.</summary>
        public string Describe() => Endpoint ?? ("Amazon S3" + (Region is null ? "" : $" ({Region})"));
    }
}
