using System.Diagnostics;
using System.Text.Json;

namespace VmCheckpoint.Core.Tests.Disks;

/// <summary>Runs qemu-img and qemu-io, the reference implementation the Disks layer is checked against.</summary>
internal static class Qemu
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string tool, params string[] args)
    {
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(Timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{tool} {string.Join(' ', args)} did not finish");
        }

        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Runs a tool and fails the test unless it exits 0.</summary>
    public static string Ok(string tool, params string[] args)
    {
        Result r = Run(tool, args);
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{tool} {string.Join(' ', args)} exited {r.ExitCode}:\n{r.Stdout}\n{r.Stderr}");
        return r.Stdout;
    }

    public static void Img(params string[] args) => Ok("qemu-img", args);

    /// <summary>qemu-img create -f qcow2 with options and size.</summary>
    public static void CreateQcow2(string path, string options, string size, string? backing = null, string? backingFormat = null)
    {
        var args = new List<string> { "create", "-q", "-f", "qcow2" };
        if (options.Length > 0) { args.Add("-o"); args.Add(options); }
        if (backing != null) { args.Add("-b"); args.Add(backing); args.Add("-F"); args.Add(backingFormat ?? "qcow2"); }
        args.Add(path);
        args.Add(size);
        Img(args.ToArray());
    }

    /// <summary>qemu-io with one -c per command, e.g. "write -P 0x11 0 64k".</summary>
    public static void Io(string path, string format, params string[] commands)
    {
        var args = new List<string> { "-f", format };
        foreach (string c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(path);
        Ok("qemu-io", args.ToArray());
    }

    /// <summary>True when qemu-img compare finds the two guest views identical.</summary>
    public static Result Compare(string a, string formatA, string b, string formatB) =>
        Run("qemu-img", "compare", "-f", formatA, "-F", formatB, a, b);

    public static long ActualSize(string path)
    {
        string json = Ok("qemu-img", "info", "--output=json", path);
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.GetProperty("actual-size").GetInt64();
    }
}
