using System.Diagnostics;
using Amazon.Runtime;
using VmCheckpoint.Core.Repository.Backends;

namespace VmCheckpoint.Core.Tests.Repository.Backends;

/// <summary>
/// The real S3 gateway of tests/hosts/start-s3.sh (Ceph's radosgw on 127.0.0.1), started once for the test run;
/// it installs Ceph's Debian packages when they are missing. A test that needs it fails, with the script's reason,
/// when it cannot start: it never passes without a server.
/// </summary>
public sealed class S3Gateway
{
    private static readonly Lazy<S3Gateway> Shared = new(() => new S3Gateway());

    private S3Gateway()
    {
        string script = FindScript();
        var start = new ProcessStartInfo("bash", $"\"{script}\"") { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"start-s3.sh failed ({process.ExitCode}): {stderr.Result}");
        var exports = new Dictionary<string, string>();
        foreach (var line in output.Split('\n'))
        {
            const string export = "export ";
            if (!line.StartsWith(export, StringComparison.Ordinal)) continue;
            int eq = line.IndexOf('=');
            exports[line.Substring(export.Length, eq - export.Length)] = line.Substring(eq + 1).Trim();
        }
        Endpoint = exports["AWS_ENDPOINT_URL"];
        Credentials = new BasicAWSCredentials(exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]);
    }

    public static S3Gateway Instance => Shared.Value;

    public string Endpoint { get; }
    public AWSCredentials Credentials { get; }

    /// <summary>A backend on a new bucket of its own (created by CreateLocation).</summary>
    internal S3Backend NewBackend(string prefix = "repo")
    {
        var location = S3Location.Parse($"s3://xunit-{Guid.NewGuid():N}".Substring(0, 5 + 6 + 20) + "/" + prefix);
        var backend = S3Backend.Connect(location, new S3Settings(Endpoint, null), Credentials);
        backend.CreateLocation(Array.Empty<string>());
        return backend;
    }

    private static string FindScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "hosts", "start-s3.sh");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("tests/hosts/start-s3.sh not found above " + AppContext.BaseDirectory);
    }
}
