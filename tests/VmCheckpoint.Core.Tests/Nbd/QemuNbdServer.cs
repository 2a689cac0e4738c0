using System.Diagnostics;

namespace VmCheckpoint.Core.Tests.Nbd;

/// <summary>
/// qemu-nbd serving one image read-only on a unix socket, export "vda": the NBD server libvirt's pull backups use.
/// Killed on dispose.
/// </summary>
internal sealed class QemuNbdServer : IDisposable
{
    public const string Export = "vda";
    private readonly Process _process;

    /// <param name="bitmap">A persistent bitmap of the qcow2 to export as "qemu:dirty-bitmap:NAME".</param>
    public QemuNbdServer(string image, string socketPath, string format = "qcow2", string? bitmap = null)
    {
        SocketPath = socketPath;
        var psi = new ProcessStartInfo("qemu-nbd")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // Without --persistent qemu-nbd exits when its first client disconnects.
        foreach (string a in new[] { "--read-only", "--persistent", "--shared=4", "-k", socketPath, "-f", format, "-x", Export })
            psi.ArgumentList.Add(a);
        if (bitmap != null) { psi.ArgumentList.Add("-B"); psi.ArgumentList.Add(bitmap); }
        psi.ArgumentList.Add(image);

        _process = Process.Start(psi) ?? throw new InvalidOperationException("cannot start qemu-nbd");
        var clock = Stopwatch.StartNew();
        while (!File.Exists(socketPath))
        {
            if (_process.HasExited)
                throw new Xunit.Sdk.XunitException($"qemu-nbd exited {_process.ExitCode}: {_process.StandardError.ReadToEnd()}");
            if (clock.Elapsed > TimeSpan.FromSeconds(20))
            {
                Dispose();
                throw new TimeoutException($"qemu-nbd did not create {socketPath}");
            }

            Thread.Sleep(10);
        }
    }

    public string SocketPath { get; }

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
