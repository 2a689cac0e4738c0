using Amazon.S3;
using VmCheckpoint.Core.Repository.Backends;
using Xunit;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>s3:// addresses and the AWS settings, without a server.</summary>
public sealed class S3LocationTests
{
    [Theory]
    [InlineData("s3://backups", "backups", "", "s3://backups")]
    [InlineData("s3://backups/", "backups", "", "s3://backups")]
    [InlineData("s3://backups/vm/kvm01", "backups", "vm/kvm01", "s3://backups/vm/kvm01")]
    [InlineData("s3://backups/vm/kvm01/", "backups", "vm/kvm01", "s3://backups/vm/kvm01")]
    [InlineData("S3://my.bucket-1/p", "my.bucket-1", "p", "s3://my.bucket-1/p")]
    public void AnAddressNamesABucketAndAPrefix(string address, string bucket, string prefix, string canonical)
    {
        var location = S3Location.Parse(address);
        Assert.Equal(bucket, location.Bucket);
        Assert.Equal(prefix, location.Prefix);
        Assert.Equal(canonical, location.ToString());
        Assert.Equal(canonical, S3Location.Parse(location.ToString()).ToString()); // the catalog's key round-trips
    }

    [Fact]
    public void KeysAreTheNameUnderThePrefix()
    {
        Assert.Equal("a/b/packs/ab/x.pack", S3Location.Parse("s3://bk1/a/b").Key("packs/ab/x.pack"));
        Assert.Equal("locks/x.lock", S3Location.Parse("s3://bk1").Key("locks/x.lock"));
    }

    [Theory]
    [InlineData("s3://")]
    [InlineData("s3:///prefix")]
    [InlineData("s3://ab")]                        // too short
    [InlineData("s3://Backups/x")]                 // upper case
    [InlineData("s3://back_ups")]                  // underscore
    [InlineData("s3://-backups")]
    [InlineData("s3://backups-")]
    [InlineData("s3://back..ups")]
    [InlineData("s3://192.168.1.10")]              // an IP address
    [InlineData("s3://backups//x")]                // empty segment
    [InlineData("s3://backups/a/../b")]
    [InlineData("s3://backups/./b")]
    [InlineData("s3://backups/a\\b")]
    public void ABadAddressSaysWhatIsWrong(string address)
    {
        var e = Assert.Throws<ArgumentException>(() => S3Location.Parse(address));
        Assert.Contains("s3://", e.Message + address);
    }

    [Theory]
    [InlineData("s3://x", true)]
    [InlineData("S3://x", true)]
    [InlineData("/srv/backups", false)]
    [InlineData("./s3://x", false)]
    [InlineData("\\\\server\\share", false)]
    [InlineData(null, false)]
    public void OnlyS3AddressesAreAddresses(string? location, bool isAddress)
    {
        Assert.Equal(isAddress, RepositoryBackends.IsAddress(location));
    }

    [Fact]
    public void AFolderIsStillAFolder()
    {
        Assert.IsType<LocalFolderBackend>(RepositoryBackends.For("/srv/backups"));
    }

    [Fact]
    public void ACustomEndpointIsAddressedPathStyleWithARegionToSignWith()
    {
        var settings = S3Settings.FromEnvironment(new Dictionary<string, string?> { ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:7480" });
        var config = settings.ToConfig();
        Assert.True(config.ForcePathStyle);
        Assert.StartsWith("http://127.0.0.1:7480", config.ServiceURL);
        Assert.Equal(S3Settings.DefaultRegion, config.AuthenticationRegion);
        Assert.Equal(Amazon.Runtime.RequestRetryMode.Standard, config.RetryMode);
        Assert.Equal(S3Backend.MaxRetries, config.MaxErrorRetry);
        Assert.Equal("http://127.0.0.1:7480", settings.Describe());
    }

    [Fact]
    public void TheS3SpecificEndpointAndRegionWin()
    {
        var settings = S3Settings.FromEnvironment(new Dictionary<string, string?>
        {
            ["AWS_ENDPOINT_URL"] = "http://a:1", ["AWS_ENDPOINT_URL_S3"] = "https://b:2",
            ["AWS_DEFAULT_REGION"] = "eu-west-1", ["AWS_REGION"] = "eu-central-1",
        });
        Assert.Equal("https://b:2", settings.Endpoint);
        Assert.Equal("eu-central-1", settings.Region);
        Assert.Equal("eu-central-1", settings.ToConfig().AuthenticationRegion);
    }

    [Fact]
    public void AmazonS3IsAddressedByRegionVirtualHostStyle()
    {
        var config = S3Settings.FromEnvironment(new Dictionary<string, string?> { ["AWS_REGION"] = "eu-west-1" }).ToConfig();
        Assert.False(config.ForcePathStyle);
        Assert.Null(config.ServiceURL);
        Assert.Equal("eu-west-1", config.RegionEndpoint!.SystemName);
    }

    [Fact]
    public void AnEndpointThatIsNoHttpAddressIsRefused()
    {
        var e = Assert.Throws<ArgumentException>(() => S3Settings.FromEnvironment(new Dictionary<string, string?> { ["AWS_ENDPOINT_URL"] = "127.0.0.1:7480" }));
        Assert.Contains("AWS_ENDPOINT_URL", e.Message);
    }

    [Fact]
    public void AnUnreachableEndpointIsAnIOExceptionNamingBucketObjectAndEndpoint()
    {
        // A port nobody listens on: every call fails, after the SDK's retries, as the contract says (never empty).
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var backend = S3Backend.Connect(S3Location.Parse("s3://nobody-home/repo"), new S3Settings($"http://127.0.0.1:{port}", null),
            new Amazon.Runtime.BasicAWSCredentials("AKIDEXAMPLE", "secret"));
        var e = Assert.Throws<IOException>(() => backend.List("checkpoints/"));
        Assert.Contains("s3://nobody-home/repo/checkpoints", e.Message);
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Throws<IOException>(() => backend.GetInfo("vmcheckpoint-repository.json"));
        Assert.Throws<IOException>(() => backend.Put("locks/a.lock", new byte[] { 1 }));
        Assert.Throws<IOException>(() => backend.LocationExists());
    }
}
