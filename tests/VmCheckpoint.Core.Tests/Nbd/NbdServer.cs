using System.Diagnostics;

namespace VmCheckpoint.Core.Tests.Nbd;

/// <summary>
/// An NBD server process on a unix socket, killed on dispose: qemu-nbd (the server libvirt's pull backups use) or
/// nbdkit (whose filters make a server that answers block status differently).
/// </summary>
internal sealed class NbdServer : IDisposable
{
    public const string Export = "vda";
    private readonly Process _process;

    private NbdServer(string tool, string socketPath, IEnumerable<string> args)
    {
        SocketPath = socketPath;
        var psi = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string a in args) psi.ArgumentList.Add(a);

        _process = Process.Start(psi) ?? throw new InvalidOperationException($"cannot start {tool}");
        var clock = Stopwatch.StartNew();
        while (!File.Exists(socketPath))
        {
            if (_process.HasExited)
                throw new Xunit.Sdk.XunitException($"{tool} exited {_process.ExitCode}: {_process.StandardError.ReadToEnd()}");
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                Dispose();
                throw new TimeoutException($"{tool} did not create {socketPath}");
            }

            Thread.Sleep(10);
        }
    }

    public string SocketPath { get; }

    /// <summary>qemu-nbd serving <paramref name="image"/> read-only as export "vda".</summary>
    /// <param name="bitmap">A persistent bitmap of the qcow2 to export as "qemu:dirty-bitmap:NAME".</param>
    public static NbdServer QemuNbd(string image, string socketPath, string format = "qcow2", string? bitmap = null)
    {
        // Without --persistent qemu-nbd exits when its first client disconnects.
        var args = new List<string> { "--read-only", "--persistent", "--shared=4", "-k", socketPath, "-f", format, "-x", Export };
        if (bitmap != null) { args.Add("-B"); args.Add(bitmap); }
        args.Add(image);
        return new NbdServer("qemu-nbd", socketPath, args);
    }

    /// <summary>nbdkit in the foreground, read-only, with the given filters, plugin and plugin arguments.</summary>
    public static NbdServer Nbdkit(string socketPath, string[] filters, string plugin, params string[] pluginArgs)
    {
        var args = new List<string> { "--foreground", "--readonly", "--unix", socketPath };
        foreach (string f in filters) args.Add("--filter=" + f);
        args.Add(plugin);
        args.AddRange(pluginArgs);
        return new NbdServer("nbdkit", socketPath, args);
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited) _process.Kill();
            _process.WaitForExit(10_000);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }

        _process.Dispose();
    }
}
